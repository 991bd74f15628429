"""Operational routes: health, readiness, metrics, loaded models, the web page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import RuntimeDep
from service.errors import error_response
from service.schemas import ModelInfo

router = APIRouter()
STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/healthz", tags=["ops"])
async def get_health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "Models not loaded yet"}})
async def get_ready(runtime: RuntimeDep):
    """Readiness: the bundles are loaded and warmed up."""
    if not runtime.ready:
        return error_response(503, "not_ready", "the models are still loading")
    return {"status": "ready", "models": [m.bundle.role for m in runtime.models()]}


@router.get("/metrics", tags=["ops"], response_class=Response)
async def get_metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", tags=["models"], response_model=list[ModelInfo])
async def list_models(runtime: RuntimeDep) -> list[ModelInfo]:
    """The loaded bundles and the metrics from their model cards."""
    return [ModelInfo(**{k: v for k, v in m.bundle.to_json().items() if k in ModelInfo.model_fields})
            for m in runtime.models()]


@router.get("/", include_in_schema=False)
async def get_page():
    page = STATIC / "index.html"
    if not page.is_file():
        return JSONResponse({"docs": "/docs"})
    return FileResponse(page, media_type="text/html")
