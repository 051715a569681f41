"""The Open Inference Protocol (v2) REST binding, what KServe, Triton and their clients (``tritonclient``) speak:

    GET  /v2                                    server metadata (name, version, extensions)
    GET  /v2/health/live, /v2/health/ready      liveness and readiness (open, like /healthz and /readyz)
    GET  /v2/models/{name}[/versions/{v}]       model metadata: inputs, outputs, platform, versions
    GET  /v2/models/{name}[/versions/{v}]/ready model readiness
    POST /v2/models/{name}[/versions/{v}]/infer inference, JSON or with the binary tensor data extension

Thin handlers over ``service/v2_protocol.py`` (the tensors and their encodings) and the scoring core, so
/predict and /v2 requests for one model share its batcher, its limits and its metrics. ``V2Route`` answers
every error of these routes, their dependencies' too (the API key), in the protocol's shape,
``{"error": "..."}``: 400 for a request to fix, 404 for an unknown model or version, 401, 413 and 503 as
/predict has them. What fails before a route is found (an unknown path or method under /v2, a body over the
size limit) gets the same shape from ``service/errors.py`` and ``service/middleware.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from service import v2_protocol
from service.errors import error_response, internal_error, v2_error
from service.routes.dependencies import BodyDep, CoreDep, SettingsDep
from service.scoring import InvalidInput, ScoringCore
from service.v2_protocol import (
    InferRequest,
    InferResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
    V2Error,
    V2ErrorResponse,
)

log = logging.getLogger("service")

SERVER_NAME = "imdb-sentiment-service"
HEADER_LENGTH = "Inference-Header-Content-Length"
TAGS = ["open inference protocol (v2)"]
TENSOR_MEDIA_TYPES = ("application/json", "application/octet-stream")


class V2Route(APIRoute):
    """An APIRoute whose errors, raised by the handler or by a dependency, answer ``{"error": "..."}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # the errors raised on purpose get their status; others a logged 500
                return error_answer(request, error)

        return answer


def error_answer(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, V2Error):
        return JSONResponse({"error": error.message}, error.status)
    if isinstance(error, InvalidInput):  # the core's limits: too many reviews, a review too long, token ids
        return JSONResponse({"error": error.message}, 400)
    if isinstance(error, RequestValidationError):  # a path or header parameter FastAPI could not read
        return JSONResponse({"error": "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                                                for item in error.errors())}, 400)
    try:  # HTTP problems (401 without a key, 413, a client that went away) and ModelUnavailable (503)
        status, content, headers = error_response(error)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        status, content, headers = internal_error()
    return JSONResponse(v2_error(content), status, headers)


async def check_tensor_body(request: Request) -> None:
    """JSON, binary tensor data (application/octet-stream) or no Content-Type (what tritonclient sends); form
    and text bodies, which browsers send across sites without asking, are refused."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in TENSOR_MEDIA_TYPES and not (
            media_type.startswith("application/") and media_type.endswith("+json")):
        raise V2Error(f"unsupported Content-Type {media_type!r}: send the request as application/json, or as "
                      "application/octet-stream with binary tensor data (Inference-Header-Content-Length)")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise V2Error(f"compressed request bodies are not supported (Content-Encoding: {encoding}); send the body "
                      "uncompressed")


def inline_schema(model: type[BaseModel]) -> dict:
    """``model``'s JSON schema with its nested models written out: the request body is declared by hand
    (the route reads it itself, JSON or binary), so its schema cannot point into the components."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve({**definitions[node["$ref"].rsplit("/", 1)[1]],
                                **{key: value for key, value in node.items() if key != "$ref"}})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def _error(description: str) -> dict:
    return {"model": V2ErrorResponse, "description": description}


UNAUTHORIZED = {401: _error("API keys are configured and X-API-Key is missing or wrong.")}
MODEL_ERRORS = {**UNAUTHORIZED, 404: _error("No such model, or no such version of it.")}
INFER_ERRORS = {
    **MODEL_ERRORS,
    200: {"description": "The outputs; with binary outputs, a JSON header of Inference-Header-Content-Length "
                         "bytes followed by their data.",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
          "headers": {HEADER_LENGTH: {"description": "Bytes of JSON before the binary data (binary outputs only).",
                                      "schema": {"type": "integer"}}}},
    400: _error("Invalid request: input name, datatype, shape or data; an empty batch; too many reviews or a review "
                "too long (the limits of /predict); `error` says what to fix."),
    413: _error("Request body over SENTIMENT_MAX_BODY_BYTES."),
    503: _error("The model failed, timed out or is shutting down; retry."),
}
INFER_OPENAPI = {"requestBody": {
    "required": True,
    "description": "An inference request: JSON, or with the binary tensor data extension a JSON header of "
                   "Inference-Header-Content-Length bytes followed by the inputs' binary data.",
    "content": {"application/json": {"schema": inline_schema(InferRequest)},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
# Optional, though typed int: None is only the default, and the OpenAPI schema says "integer", not "integer or null".
HeaderLength = Annotated[int, Header(
    alias=HEADER_LENGTH, ge=0,
    description="Binary tensor data extension: the body's first this many bytes are the JSON request, the rest the "
                "inputs' binary data.")]

# /v2/health/*: open, like /healthz and /readyz (app.py includes it without the API-key dependency).
health_router = APIRouter(prefix="/v2", tags=TAGS, route_class=V2Route)
router = APIRouter(prefix="/v2", tags=TAGS, route_class=V2Route)


@health_router.get("/health/live", response_model=ServerLiveResponse, operation_id="v2_server_live",
                   summary="Open Inference Protocol: the server is live")
async def server_live() -> ServerLiveResponse:
    return ServerLiveResponse(live=True)


@health_router.get("/health/ready", response_model=ServerReadyResponse, operation_id="v2_server_ready",
                   responses={400: {"model": ServerReadyResponse, "description": "Models not warmed up yet."}},
                   summary="Open Inference Protocol: every model is loaded and warmed up")
async def server_ready(core: CoreDep) -> JSONResponse:
    return JSONResponse({"ready": core.ready}, 200 if core.ready else 400)


@router.get("", response_model=ServerMetadataResponse, responses=UNAUTHORIZED, operation_id="v2_server_metadata",
            summary="Open Inference Protocol: server metadata")
async def server_metadata(request: Request) -> ServerMetadataResponse:
    return v2_protocol.server_metadata(SERVER_NAME, request.app.version)


@router.get("/models/{model_name}", response_model=ModelMetadataResponse, responses=MODEL_ERRORS,
            operation_id="v2_model_metadata", summary="Open Inference Protocol: a model's inputs and outputs")
async def model_metadata(core: CoreDep, model_name: str) -> ModelMetadataResponse:
    return v2_protocol.model_metadata(v2_protocol.find_model(core, model_name))


@router.get("/models/{model_name}/versions/{model_version}", response_model=ModelMetadataResponse,
            responses=MODEL_ERRORS, operation_id="v2_model_version_metadata",
            summary="Open Inference Protocol: a model version's inputs and outputs")
async def model_version_metadata(core: CoreDep, model_name: str, model_version: str) -> ModelMetadataResponse:
    return v2_protocol.model_metadata(v2_protocol.find_model(core, model_name, model_version))


READY_RESPONSES = {**MODEL_ERRORS, 400: {"model": ModelReadyResponse, "description": "Not warmed up yet."}}


def _model_ready(core: ScoringCore, model_name: str, model_version: str | None = None) -> JSONResponse:
    model = v2_protocol.find_model(core, model_name, model_version)
    return JSONResponse({"name": model.name, "ready": core.ready}, 200 if core.ready else 400)


@router.get("/models/{model_name}/ready", response_model=ModelReadyResponse, responses=READY_RESPONSES,
            operation_id="v2_model_ready", summary="Open Inference Protocol: the model is ready")
async def model_ready(core: CoreDep, model_name: str) -> JSONResponse:
    return _model_ready(core, model_name)


@router.get("/models/{model_name}/versions/{model_version}/ready", response_model=ModelReadyResponse,
            responses=READY_RESPONSES, operation_id="v2_model_version_ready",
            summary="Open Inference Protocol: the model version is ready")
async def model_version_ready(core: CoreDep, model_name: str, model_version: str) -> JSONResponse:
    return _model_ready(core, model_name, model_version)


async def _infer(request: Request, core: ScoringCore, log_reviews: bool, body: bytes, header_length: int | None,
                 model_name: str, model_version: str | None = None) -> Response:
    model = v2_protocol.find_model(core, model_name, model_version)
    decoded = v2_protocol.decode_request(*v2_protocol.split_body(body, header_length), model)
    logged = request.scope.setdefault("state", {})["log"] = {"models": [model.name], "reviews": decoded.count}
    if log_reviews and decoded.texts is not None:
        logged["texts"] = decoded.texts
    scores = await v2_protocol.score(core, model, decoded)
    payload, json_length = v2_protocol.encode_response(model, decoded, scores)
    if json_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)})


@router.post("/models/{model_name}/infer", response_model=InferResponse, responses=INFER_ERRORS,
             operation_id="v2_infer", summary="Open Inference Protocol: score reviews (text or tokens)",
             dependencies=[Depends(check_tensor_body)], openapi_extra=INFER_OPENAPI)
async def infer(request: Request, body: BodyDep, core: CoreDep, settings: SettingsDep, model_name: str,
                header_length: HeaderLength = None) -> Response:
    return await _infer(request, core, settings.log_reviews, body, header_length, model_name)


@router.post("/models/{model_name}/versions/{model_version}/infer", response_model=InferResponse,
             responses=INFER_ERRORS, operation_id="v2_infer_version",
             summary="Open Inference Protocol: score reviews with a model version",
             dependencies=[Depends(check_tensor_body)], openapi_extra=INFER_OPENAPI)
async def infer_version(request: Request, body: BodyDep, core: CoreDep, settings: SettingsDep, model_name: str,
                        model_version: str, header_length: HeaderLength = None) -> Response:
    return await _infer(request, core, settings.log_reviews, body, header_length, model_name, model_version)

