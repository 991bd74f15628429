"""POST /predict without FastAPI's per-request routing, dependency and validation machinery.

A request to /predict spent about 0.8 ms of the event loop in FastAPI before and after the
model's work; the loop, not the cores, limits the service (docs/performance.md). This ASGI layer
answers the common request itself, through the route's own code (`routes.predict.predict_one`)
and the app's own error handlers; anything it does not recognise as plain (another parameter, a
value FastAPI would coerce or refuse, an API key to check) goes on to FastAPI unchanged, so every
refusal and every 422 stays FastAPI's.
"""

from __future__ import annotations

import inspect
from typing import get_args
from urllib.parse import parse_qsl

from starlette.requests import Request

from service.answer import ModelChoice
from service.audio import AudioError
from service.errors import ApiError
from service.routes.predict import MAX_TOP_K, predict, predict_one

PATH = "/predict"
CHOICES = get_args(ModelChoice)
BOOLS = {"true": True, "false": False, "1": True, "0": False}
# The route's own defaults, under predict_one's names
DEFAULTS = {("choice" if k == "model" else k): p.default for k, p in inspect.signature(predict).parameters.items()
            if k in ("model", "top_k", "segments", "labels")}


def plain_params(query: bytes) -> dict | None:
    """/predict's query parameters when each is given at most once with a value FastAPI would
    take as it is; None for anything else (FastAPI then answers)."""
    params = dict(DEFAULTS)
    seen = set()
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return None
        seen.add(key)
        if key == "model" and value in CHOICES:
            params["choice"] = value
        elif key == "top_k" and value.isascii() and value.isdigit() and len(value) <= 2 and 1 <= int(value) <= MAX_TOP_K:
            params["top_k"] = int(value)
        elif key == "segments" and value in BOOLS:
            params["segments"] = BOOLS[value]
        elif key == "labels" and value:
            params["labels"] = value
        else:
            return None
    return params


class FastPredict:
    """Inside the app's middleware (metrics, limits, logging see every request the same way)."""

    def __init__(self, app, fastapi_app, route):
        self.app, self.fastapi_app, self.route = app, fastapi_app, route

    async def __call__(self, scope, receive, send):
        params = None
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            runtime = self.fastapi_app.state.runtime
            params = None if runtime.settings.api_key else plain_params(scope["query_string"])
        if params is None:
            return await self.app(scope, receive, send)
        scope["route"] = self.route   # the metrics' route label, as FastAPI's router sets it
        request = Request(scope, receive)
        try:
            response = await predict_one(request, runtime, **params)
        except (ApiError, AudioError) as e:   # answered by the app's own handlers, as on FastAPI's path
            handler = self.fastapi_app.exception_handlers[ApiError if isinstance(e, ApiError) else AudioError]
            response = await handler(request, e)
        await response(scope, receive, send)
