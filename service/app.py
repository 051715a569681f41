"""The FastAPI application: ``uvicorn service.app:app``, or ``create_app(settings, core)`` in tests.

``create_app`` wires the collaborators together: the scoring core (loaded by the lifespan from the
model folder, or handed in ready-made, e.g. with a fake model), the routers, the middleware, the
error handlers, the offline docs, the page at / and, unless turned off, the /predict fast path; and what
reloads the model folder without a restart (``service/routes/admin.py``: POST /admin/reload unless turned off,
SIGHUP, the supervisor's reload rounds, polling when asked for).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from service import docs, errors, security
from service.access_log import AccessLogWriter
from service.config import Settings
from service.fast_path import SentimentAPI
from service.middleware import AccessLog, BodySizeLimit
from service.routes import admin, explain, health, models, page, predict, v2
from service.schemas import ExplainRequest, PredictRequest
from service.scoring import ALL_MODELS, ScoringCore

log = logging.getLogger("service")

DESCRIPTION = (
    "Scores movie reviews with Keras models trained on the IMDB Large Movie Review Dataset and served with "
    "onnxruntime. `POST /predict` takes raw text; the score is the probability that the review is positive. "
    "Every error answers `{\"detail\": [{\"type\", \"loc\", \"msg\"}]}`."
)


def create_app(settings: Settings | None = None, core: ScoringCore | None = None) -> SentimentAPI:
    """The app. Without ``core`` the lifespan loads the models from ``settings.model_dir``; with one it
    serves that core (and closes it at shutdown)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        serving = core if core is not None else ScoringCore.load(settings)
        app.state.core = serving
        # /readyz turns 200 once every model has answered one warm-up inference.
        warm_up = asyncio.create_task(asyncio.to_thread(serving.warm_up))
        warm_up.add_done_callback(_log_warm_up_failure)
        reloads = admin.BackgroundReloads(app).start()  # SIGHUP, the supervisor's rounds, polling
        yield
        await reloads.stop()
        await asyncio.gather(warm_up, serving.close(), return_exceptions=True)
        if app.state.access_log is not None:
            app.state.access_log.flush()

    app = SentimentAPI(
        title="IMDB sentiment service", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served offline by service.docs
        # POST /predict/ gets a 404 that names /predict rather than a 307 with an empty body.
        redirect_slashes=False,
        # FastAPI's built-in OpenTelemetry looks up the providers on every request (about a tenth of
        # a request's CPU here); off unless asked for. Prometheus metrics and the access log stay.
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.access_log = access_log = AccessLogWriter() if settings.access_log else None
    _configure_logging(settings.log_level)
    protected = security.configure(app, settings)
    _serve_openapi_as_a_route(app)
    if settings.fast_path:
        app.include_fast_router(predict.router, dependencies=protected)
    else:
        app.include_router(predict.router, dependencies=protected)
    app.include_router(explain.router, dependencies=protected)
    app.include_router(models.router, dependencies=protected)
    if settings.admin_reload:  # POST /admin/reload; SIGHUP reloads either way
        app.include_router(admin.router, dependencies=protected)
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=protected)
    app.include_router(v2.health_router)  # the Open Inference Protocol: /v2/health/* open, like /healthz and /readyz
    app.include_router(v2.router, dependencies=protected)  # the rest of /v2
    docs.install(app)
    app.include_router(page.router)  # GET /: the page to try the models (public, like /docs)
    # Middleware added first runs innermost. Access log, body limit and CORS apply to every route.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog, writer=access_log)
    security.add_cors(app, settings)  # outermost: CORS headers go on every answer
    errors.install(app)
    return app


def _log_warm_up_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("warm-up inference failed; /readyz stays 503: %r", task.exception())


def _serve_openapi_as_a_route(app: FastAPI) -> None:
    """FastAPI serves /openapi.json from a plain Starlette route, which the metrics cannot name; this
    serves it from an APIRoute instead, with the schema completed by ``_openapi``."""
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) != app.openapi_url]
    app.openapi = lambda: _openapi(app)

    @app.get(app.openapi_url, include_in_schema=False)
    async def openapi_schema(request: Request) -> JSONResponse:
        return JSONResponse(app.openapi())


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus what is only known at run time: the loaded model names and the limits."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        settings: Settings = app.state.settings
        for request, max_reviews in ((PredictRequest, settings.max_reviews),
                                     (ExplainRequest, settings.explain_max_reviews)):
            schema["components"]["schemas"][request.__name__] = request.model_json_schema(
                ref_template="#/components/schemas/{model}")
            reviews = schema["components"]["schemas"][request.__name__]["properties"]["reviews"]
            reviews["maxItems"] = max_reviews
            reviews["items"]["maxLength"] = settings.max_review_chars
        core = getattr(app.state, "core", None)
        if core is not None:
            (model,) = (p for p in schema["paths"]["/predict"]["post"]["parameters"] if p["name"] == "model")
            names = {"type": "string", "enum": [*core.repository.names, ALL_MODELS]}
            model["schema"] = {"anyOf": [{"type": "array", "items": names}, {"type": "null"}]}
            (model,) = (p for p in schema["paths"]["/explain"]["post"]["parameters"] if p["name"] == "model")
            model["schema"] = {"anyOf": [{"type": "string", "enum": core.repository.names}, {"type": "null"}]}
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


app = create_app()
