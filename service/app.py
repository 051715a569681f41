"""FastAPI application: ``uvicorn service.app:app``."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from service import metrics, security
from service.batching import Batcher, BatcherClosedError
from service.config import Settings
from service.middleware import AccessLog, BodySizeLimit
from service.repository import LoadedModel, ModelRepository, UnknownModelError
from service.schemas import (
    Agreement,
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    ModelResult,
    ModelsResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)

log = logging.getLogger("service")

# Tokenizing this many characters takes a few milliseconds: beyond it, tokenize in a worker thread
# so one huge request cannot stall the event loop.
INLINE_TOKENIZE_CHARS = 20_000

MODEL_PARAMETER = {
    "name": "model", "in": "query", "required": False,
    "description": "Model name; repeat it to compare models, or `all`. Default: the model with the best test "
                   "accuracy (or SENTIMENT_DEFAULT_MODEL).",
    "schema": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
}
# /predict reads its query string and body itself (read_predict_request), after the API-key check:
# FastAPI's parameter machinery cost about 25 µs of CPU per request here, on the hot path. The OpenAPI
# page documents both all the same.
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


class ServiceUnavailable(Exception):
    def __init__(self, message: str):
        self.message = message


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        repository = ModelRepository.load(
            settings.model_dir, intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads, default_model=settings.default_model,
            skip_broken=settings.skip_broken_models)
        batchers = {
            name: Batcher(model.predict, max_batch_size=settings.batch_max_size,
                          max_wait=settings.batch_max_wait_ms / 1000,
                          on_batch=metrics.for_model(name).batch_size.observe, name=name)
            for name, model in repository.models.items()
        }
        app.state.serving = Serving(repository, batchers)
        # /readyz turns 200 once every model has answered one warm-up inference.
        warm_up = asyncio.create_task(asyncio.to_thread(repository.warm_up))
        warm_up.add_done_callback(_log_warm_up_failure)
        yield
        await asyncio.gather(warm_up, *(batcher.close() for batcher in batchers.values()), return_exceptions=True)

    app = FastAPI(
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
    _configure_logging(settings.log_level)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    protected = security.configure(app, settings)  # after the others: CORS headers go on every answer
    app.add_exception_handler(ServiceUnavailable, _service_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    _add_routes(app, settings, protected)
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


@dataclass
class Serving:
    """What the lifespan loads once and every request shares."""

    repository: ModelRepository
    batchers: dict[str, Batcher]


async def get_serving(request: Request) -> Serving:
    return request.app.state.serving


async def _service_unavailable(request: Request, error: ServiceUnavailable) -> JSONResponse:
    return JSONResponse({"detail": error.message}, status_code=503, headers={"Retry-After": "1"})


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 format without echoing the input back: it can be megabytes of review text, or a
    value such as Infinity that JSON cannot carry."""
    detail = []
    for item in error.errors():
        entry = {key: item[key] for key in ("type", "loc", "msg")}
        context = {key: value for key, value in item.get("ctx", {}).items() if isinstance(value, (str, int))}
        if context:  # e.g. the JSON decoder's reason, or a length limit
            entry["ctx"] = context
        detail.append(entry)
    return JSONResponse({"detail": detail}, status_code=422)


def _invalid(location: tuple, message: str, value) -> RequestValidationError:
    """A 422 in FastAPI's own error format, so every validation error has one shape."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message, "input": value}])


def is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def read_predict_request(request: Request) -> tuple[PredictRequest, list[str] | None]:
    """The validated body and the ``model`` query values of a /predict request."""
    if not is_json(request.headers.get("content-type")):
        # Also keeps browsers' cross-site "simple" POSTs (form or text/plain bodies) out.
        raise HTTPException(415, "send the body as JSON with the header Content-Type: application/json")
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise HTTPException(400, "the client disconnected before the whole body arrived") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(("body",), f"request body is not valid UTF-8 JSON ({error.reason} at byte {error.start}); "
                       "send UTF-8 encoded JSON", None) from None
    try:
        body = PredictRequest.model_validate_json(text)
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])}
                                      for item in error.errors(include_url=False)]) from None
    return body, request.query_params.getlist("model") or None


def check_limits(reviews: list[str], settings: Settings) -> None:
    if len(reviews) > settings.max_reviews:
        raise _invalid(("body", "reviews"), f"too many reviews: {len(reviews)}, at most {settings.max_reviews} "
                       "per request (SENTIMENT_MAX_REVIEWS); split them over several requests", len(reviews))
    for position, review in enumerate(reviews):
        if len(review) > settings.max_review_chars:
            raise _invalid(("body", "reviews", position),
                           f"review {position} has {len(review)} characters, at most {settings.max_review_chars} "
                           "are accepted (SENTIMENT_MAX_REVIEW_CHARS); shorten it", len(review))


def agreement(names: list[str], labels: list[list[str]]) -> Agreement:
    disagreements = [index for index, row in enumerate(zip(*labels)) if len(set(row)) > 1]
    return Agreement(models=names, agree=len(labels[0]) - len(disagreements), disagree=len(disagreements),
                     disagreements=disagreements)


def _unavailable(model: LoadedModel, message: str) -> ServiceUnavailable:
    metrics.for_model(model.name).unavailable.inc()
    return ServiceUnavailable(message)


async def _score(model: LoadedModel, batcher: Batcher, tokens: np.ndarray) -> np.ndarray:
    started = time.perf_counter()
    try:
        scores = await batcher.predict(tokens)
    except BatcherClosedError:
        raise _unavailable(model, f"model {model.name} is shutting down; retry on another instance") from None
    except Exception as error:
        log.exception("model %s failed", model.name)
        raise _unavailable(model, f"model {model.name} failed to score the reviews ({type(error).__name__}); "
                                  "other models are unaffected") from None
    if not ((scores >= 0) & (scores <= 1)).all():  # NaN fails both comparisons
        log.error("model %s returned scores outside [0, 1]", model.name)
        raise _unavailable(model, f"model {model.name} returned invalid scores; other models are unaffected")
    model_metrics = metrics.for_model(model.name)
    model_metrics.latency.observe(time.perf_counter() - started)
    model_metrics.ok.inc()
    model_metrics.reviews.inc(len(tokens))
    return scores


def _add_routes(app: FastAPI, settings: Settings, protected: list) -> None:
    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, tags=["inference"], operation_id="predict",
              dependencies=protected, summary="Score reviews with one model or compare several",
              openapi_extra=PREDICT_OPENAPI)
    async def predict(request: Request) -> Response:
        body, model = await read_predict_request(request)
        serving = await get_serving(request)  # called, not injected: FastAPI's dependency solving is on the hot path
        reviews = body.reviews
        check_limits(reviews, settings)
        try:
            models = serving.repository.resolve(model)
        except UnknownModelError as error:
            raise _invalid(("query", "model"), str(error), error.unknown) from None
        request.state.log = {"models": [m.name for m in models], "reviews": len(reviews)}
        if settings.log_reviews:
            request.state.log["texts"] = reviews
        metrics.REQUEST_REVIEWS.observe(len(reviews))

        # Models that share a tokenizer score the very same token batch.
        tokenizers = list({id(m.tokenizer): m.tokenizer for m in models}.values())
        if sum(map(len, reviews)) > INLINE_TOKENIZE_CHARS:
            encoded = await run_in_threadpool(lambda: [t.encode_batch(reviews) for t in tokenizers])
        else:
            encoded = [t.encode_batch(reviews) for t in tokenizers]
        tokens = {id(t): batch for t, batch in zip(tokenizers, encoded)}

        try:
            async with asyncio.timeout(settings.request_timeout_seconds):
                scoring = [_score(m, serving.batchers[m.name], tokens[id(m.tokenizer)]) for m in models]
                all_scores = [await scoring[0]] if len(scoring) == 1 else await asyncio.gather(*scoring)
        except TimeoutError:
            raise ServiceUnavailable(f"prediction took longer than {settings.request_timeout_seconds} s "
                                     "(SENTIMENT_REQUEST_TIMEOUT_SECONDS); retry with fewer reviews") from None

        results = []
        for m, scores in zip(models, all_scores):
            predictions = [Prediction(score=score, label="positive" if score >= 0.5 else "negative")
                           for score in scores.astype(float).tolist()]
            results.append(ModelResult(model=m.name, predictions=predictions))
        summary = None
        if len(results) > 1:
            summary = agreement([r.model for r in results], [[p.label for p in r.predictions] for r in results])
        # Built from validated models already: serialise once, skipping FastAPI's second validation pass.
        return Response(PredictResponse(results=results, agreement=summary).model_dump_json(),
                        media_type="application/json")

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
