"""FastAPI application: ``uvicorn service.app:app``."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from service import errors, metrics, security
from service.access_log import AccessLogWriter
from service.batching import Batcher
from service.config import Settings
from service.middleware import AccessLog, BodySizeLimit, DirectRoute
from service.predict import PredictEndpoint
from service.repository import ModelLoadError, ModelRepository
from service.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)

log = logging.getLogger("service")

MODEL_PARAMETER = {
    "name": "model", "in": "query", "required": False,
    "description": "Model name; repeat it to compare models, or `all`. Default: the model with the best test "
                   "accuracy (or SENTIMENT_DEFAULT_MODEL).",
    "schema": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
}
# PredictEndpoint reads the query string and the body itself; declared here for the OpenAPI page.
PREDICT_OPENAPI = {
    "parameters": [MODEL_PARAMETER],
    "requestBody": {"required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
}

ERRORS = {
    401: {"model": ErrorResponse, "description": "API keys are configured and X-API-Key is missing or wrong."},
    413: {"model": ErrorResponse, "description": "Request body over SENTIMENT_MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "The body is not sent as JSON (Content-Type: application/json)."},
    422: {"model": ErrorResponse, "description": "Invalid body, review or model name; `detail` says what to fix."},
    503: {"model": ErrorResponse, "description": "A model failed, timed out or is shutting down."},
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        repository = ModelRepository.load(
            settings.model_dir, intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads, default_model=settings.default_model,
            skip_broken=settings.skip_broken_models)
        unknown = sorted(set(settings.batch_max_sizes) - set(repository.models) - set(repository.failed))
        if unknown:
            raise ModelLoadError(f"SENTIMENT_BATCH_MAX_SIZES names models that do not exist: {', '.join(unknown)}; "
                                 f"loaded: {', '.join(repository.models)}")
        batchers = {
            name: Batcher(model.predict, max_batch_size=settings.max_batch_size(name),
                          max_wait=settings.batch_max_wait_ms / 1000, timeout=settings.request_timeout_seconds,
                          on_batch=metrics.for_model(name).batch_size.observe, name=name)
            for name, model in repository.models.items()
        }
        app.state.serving = Serving(repository, batchers)
        # /readyz turns 200 once every model has answered one warm-up inference.
        warm_up = asyncio.create_task(asyncio.to_thread(repository.warm_up))
        warm_up.add_done_callback(_log_warm_up_failure)
        yield
        await asyncio.gather(warm_up, *(batcher.close() for batcher in batchers.values()), return_exceptions=True)
        if app.state.access_log is not None:
            app.state.access_log.flush()

    app = SentimentAPI(
        title="IMDB sentiment service",
        version="1.0.0",
        description=(
            "Scores movie reviews with Keras models trained on the IMDB Large Movie Review Dataset and "
            "served with onnxruntime. `POST /predict` takes raw text; the score is the probability that "
            "the review is positive."
        ),
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry looks up the providers on every request (about a tenth of
        # a request's CPU here); off unless asked for. Prometheus metrics and the access log stay.
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.access_log = access_log = AccessLogWriter() if settings.access_log else None
    _configure_logging(settings.log_level)
    protected = security.configure(app, settings)
    predict = EndpointRoute(
        "/predict", PredictEndpoint(settings, app.state.api_keys), methods=["POST"], response_model=PredictResponse,
        responses=ERRORS, tags=["inference"], operation_id="predict",
        summary="Score reviews with one model or compare several", dependencies=protected,
        openapi_extra=PREDICT_OPENAPI)
    app.router.routes.append(predict)
    app.direct_routes.append(predict)
    # Middleware added first runs innermost. Access log, body limit and CORS apply to /predict too.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog, writer=access_log)
    security.add_cors(app, settings)  # outermost: CORS headers go on every answer
    errors.install(app)
    _add_routes(app, protected)
    app.openapi = lambda: _openapi(app)
    return app


def _log_warm_up_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("warm-up inference failed; /readyz stays 503: %r", task.exception())


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus what is only known at run time: the loaded model names and the limits."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema["components"]["schemas"]["PredictRequest"] = PredictRequest.model_json_schema(
            ref_template="#/components/schemas/{model}")
        settings: Settings = app.state.settings
        reviews = schema["components"]["schemas"]["PredictRequest"]["properties"]["reviews"]
        reviews["maxItems"] = settings.max_reviews
        reviews["items"]["maxLength"] = settings.max_review_chars
        serving = getattr(app.state, "serving", None)
        if serving is not None:
            (model,) = (p for p in schema["paths"]["/predict"]["post"]["parameters"] if p["name"] == "model")
            names = {"type": "string", "enum": [*serving.repository.names, "all"]}
            model["schema"] = {"anyOf": [{"type": "array", "items": names}, {"type": "null"}]}
        # Any model that /models lists can be asked for by name (also what stateful API testers follow).
        schema["paths"]["/models"]["get"]["responses"]["200"]["links"] = {
            "PredictWithDefaultModel": {"operationId": "predict", "parameters": {"model": "$response.body#/default"}},
        }
        app.openapi_schema = schema
    return app.openapi_schema


def _configure_logging(level: str) -> None:
    """Our own handler on the ``service`` loggers: uvicorn configures only its own."""
    logger = logging.getLogger("service")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class SentimentAPI(FastAPI):
    """FastAPI, plus ``direct_routes``: routes served by the user middleware around their endpoint
    alone, past FastAPI's own per-request layers (``DirectRoute``). Each layer costs a coroutine call
    or two per request, and the whole /predict path is only about 400 µs of CPU."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.direct_routes: list[APIRoute] = []

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        for route in self.direct_routes:
            endpoint = route.app
            for middleware, args, kwargs in reversed(self.user_middleware):  # the list is outermost first
                endpoint = middleware(endpoint, *args, **kwargs)
            stack = DirectRoute(stack, route, endpoint)
        return stack


class EndpointRoute(APIRoute):
    """An operation FastAPI documents and routes to, served by a plain ASGI app that does its own
    parsing, checks (``dependencies`` are declared for the OpenAPI page only) and responses."""

    def __init__(self, path: str, endpoint: ASGIApp, **kwargs):
        async def documented_only() -> None:  # FastAPI reads the operation from kwargs, not from this
            raise NotImplementedError

        super().__init__(path, documented_only, **kwargs)
        self.app = endpoint


@dataclass
class Serving:
    """What the lifespan loads once and every request shares."""

    repository: ModelRepository
    batchers: dict[str, Batcher]


async def get_serving(request: Request) -> Serving:
    return request.app.state.serving


def _add_routes(app: FastAPI, protected: list) -> None:
    @app.get("/models", response_model=ModelsResponse, tags=["models"], operation_id="list_models",
             dependencies=protected,
             summary="Loaded models and their metadata")
    async def list_models(serving: Annotated[Serving, Depends(get_serving)]) -> ModelsResponse:
        repository = serving.repository
        return ModelsResponse(default=repository.default_name, models=[
            ModelInfo(
                name=m.name, default=m.name == repository.default_name, test_accuracy=m.test_accuracy,
                test_metrics=m.metadata.get("test_metrics", {}), parameters=m.metadata.get("parameters"),
                max_len=m.metadata["max_len"], num_words=m.metadata["num_words"],
                vocabulary_sha256=m.metadata["vocabulary"]["sha256"], onnx_sha256=m.metadata["onnx_sha256"],
                onnx_bytes=m.path.stat().st_size, created=m.metadata.get("created"),
                training=m.metadata.get("training", {}),
            )
            for m in repository.models.values()
        ])

    @app.get("/healthz", response_model=HealthResponse, tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> HealthResponse:
        return HealthResponse()

    @app.get("/readyz", response_model=ReadyResponse, tags=["health"],
             responses={503: {"model": ReadyResponse, "description": "Models not loaded or not warmed up yet."}},
             summary="Readiness: models loaded and warmed up")
    async def readyz(serving: Annotated[Serving, Depends(get_serving)]) -> JSONResponse:
        repository = serving.repository
        body = ReadyResponse(ready=repository.ready, models=repository.names, failed=repository.failed)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", dependencies=protected,
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)


app = create_app()
