"""Builds the FastAPI app: `create_app(settings)`; `ser serve` runs it under uvicorn."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from service.deps import ApiKey
from service.errors import install_error_handlers
from service.fast_predict import PATH as FAST_PATH
from service.fast_predict import FastPredict
from service.hosts import HostAllowList
from service.middleware import RequestContext
from service.routes import ops, page, predict, stream, v2
from service.runtime import Runtime
from service.settings import Settings
from service.stream_admission import Streams


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not runtime.ready:   # `ser serve` loads them before uvicorn starts
            runtime.load()   # a missing or corrupt bundle stops start-up here, with its path in the error
        yield
        app.state.streams.close()
        runtime.limiter.close()

    # /docs and /redoc with their JS and CSS served from the installed package, not a CDN:
    # they work offline and in closed networks.
    app = FastAPIOffline(title="speech-emotion-distill", version=version("speech-emotion-distill"), lifespan=lifespan,
                         static_url="/docs-assets",
                         description="Speech emotion recognition: a distilled raw-waveform CNN with a transformer fallback.")
    app.state.runtime = runtime
    app.state.streams = Streams(runtime)
    install_error_handlers(app)
    # The X-API-Key scheme is in the OpenAPI document only when a key is needed: a keyless server
    # that declared it would be seen to accept any key.
    keyed = [ApiKey] if settings.api_key else []
    app.include_router(predict.router, dependencies=keyed)
    app.include_router(v2.router)
    app.include_router(v2.infer_router, dependencies=keyed)
    app.include_router(ops.router)
    app.include_router(page.router)
    app.include_router(stream.router)
    derived = app.openapi   # FastAPI's document (cached on the app), plus the limits of these settings and models
    app.openapi = lambda: app.openapi_schema or predict.declare_labels(
        predict.limit_batch_files(derived(), settings.max_batch_files), runtime.labels)
    predict_route = next(r for r in predict.router.routes if r.path == FAST_PATH)   # included without a prefix
    app.add_middleware(FastPredict, fastapi_app=app, route=predict_route)   # inside RequestContext
    app.add_middleware(RequestContext, metrics=runtime.metrics, max_upload_bytes=settings.max_upload_bytes,
                       upload_timeout_s=settings.upload_timeout_s, limiter=runtime.limiter,
                       routes=app.routes, uploads=runtime.uploads, hosts=HostAllowList(settings.allowed_hosts))
    if settings.cors_origins:   # added last, so outermost: the early 413s and 503s carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type", "X-Request-ID"],
                           expose_headers=["Retry-After", "X-Request-ID"])
    return app
