"""Operational routes: health, readiness, metrics, loaded models."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from service.deps import RuntimeDep
from service.errors import ApiError, error_responses
from service.schemas import Health, ModelInfo, Readiness

router = APIRouter()


@router.get("/healthz", tags=["ops"], response_model=Health)
async def get_health() -> dict:
    """Liveness: the process answers. Never needs the API key."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], response_model=Readiness, responses=error_responses("ready"))
async def get_ready(runtime: RuntimeDep):
    """Readiness: the bundles are loaded and warmed up; 503 `not_ready` until then.
    Gate traffic (a load balancer, a compose healthcheck) on this route."""
    if not runtime.ready:
        raise ApiError("not_ready")
    return {"status": "ready", "models": [m.bundle.role for m in runtime.models()]}


@router.get("/metrics", tags=["ops"], response_class=Response,
            responses={status.HTTP_200_OK: {"description": "Prometheus text exposition format",
                             "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
async def get_metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics: request latency by route and status, predictions by model and
    label, error codes, fallbacks, clip durations, requests in flight."""
    # Rendered in a worker thread: the event loop keeps serving while a scrape is written.
    return Response(await run_in_threadpool(runtime.metrics.exposition), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", tags=["models"], response_model=list[ModelInfo])
async def list_models(runtime: RuntimeDep) -> list[ModelInfo]:
    """The loaded bundles (student first, then the teacher when loaded), with the
    evaluation metrics from their model cards."""
    return [ModelInfo(**{k: v for k, v in m.bundle.to_json().items() if k in ModelInfo.model_fields})
            for m in runtime.models()]

