"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service import metrics
from service.routes.dependencies import CoreDep
from service.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])
# /metrics can be protected by API keys; the probes never are (app.py includes it separately).
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse,
            responses={503: {"model": ReadyResponse, "description": "Models not loaded or not warmed up yet."}},
            summary="Readiness: models loaded and warmed up")
async def readyz(core: CoreDep) -> JSONResponse:
    repository = core.repository
    body = ReadyResponse(ready=core.ready, models=repository.names, failed=repository.failed)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
