"""Who may open a live stream, and the open streams of one app.

Every check runs before the handshake is accepted, so a refused stream costs no audio work:
origin, key, parameters, models, room (all streams, and per client address when
SER_STREAM_MAX_PER_CLIENT is set). The Host header is checked before that, for every route,
by the request middleware (service/hosts.py). Limits are per process: with several workers or
replicas, each one counts its own streams.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.websockets import WebSocket

from service.batching import WindowBatcher
from service.deps import key_matches
from service.errors import CLOSE_ABNORMAL, CLOSE_CODES, CLOSE_GOING_AWAY, CLOSE_NO_STATUS, CLOSE_NORMAL
from service.inference import OnnxModel
from service.runtime import Runtime
from service.streaming import StreamError, StreamParams

SUBPROTOCOL = "ser.stream"        # offered with the key, it is the one the server picks: the key is not echoed
KEY_PREFIX = "ser.key."           # Sec-WebSocket-Protocol: ser.key.<key>, for browsers, which cannot set headers
# The codes a close is counted under; a client may close with any code from 1000 to 4999, and
# each one would otherwise become a metric series of its own.
COUNTED_CLOSES = {CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_NO_STATUS, CLOSE_ABNORMAL, *CLOSE_CODES.values()}


@dataclass(frozen=True)
class Admission:
    """An admitted stream: its parameters, the model that answers and the one it falls back to."""

    params: StreamParams
    model: OnnxModel
    fallback: OnnxModel | None
    client: str


class Streams:
    """The open streams of one app, and the window batchers (one per model) they share."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.open = 0
        self.per_client: Counter[str] = Counter()
        self._batchers: dict[str, WindowBatcher] = {}

    def admit(self, websocket: WebSocket) -> Admission:
        """Checks made before any audio; raises StreamError."""
        runtime, settings = self.runtime, self.runtime.settings
        check_origin(websocket, settings.cors_origins)
        check_key(websocket, settings.api_key)
        params = StreamParams.parse(dict(websocket.query_params))
        if not runtime.ready:
            raise StreamError("not_ready")
        try:
            model = runtime.loaded.first(params.model)
        except LookupError:
            raise StreamError("teacher_unavailable") from None
        params.check_hop(model.bundle.windowing.window_s)
        params.label_set(model.bundle.labels)   # an unknown label fails before any audio
        if self.open >= settings.max_streams:
            raise StreamError("overloaded", f"{self.open} streams are open, the most this service takes "
                                            "(SER_MAX_STREAMS); retry shortly")
        client = websocket.client.host if websocket.client else ""
        cap = settings.stream_max_per_client
        if cap and self.per_client[client] >= cap:
            raise StreamError("streams_per_client", f"{client} has {cap} streams open, the most one client may "
                                                    "(SER_STREAM_MAX_PER_CLIENT)")
        return Admission(params, model, runtime.loaded.fallback(params.model), client)

    @contextlib.contextmanager
    def holding(self, admission: Admission):
        """Counts the stream as open while it runs."""
        self.open += 1
        self.per_client[admission.client] += 1
        self.runtime.metrics.streams_open.inc()
        try:
            yield
        finally:
            self.open -= 1
            self.per_client[admission.client] -= 1
            if not self.per_client[admission.client]:
                del self.per_client[admission.client]
            self.runtime.metrics.streams_open.dec()

    def closed(self, close_code: int, error: str | None) -> None:
        metrics = self.runtime.metrics
        metrics.stream_closes.labels(code=str(close_code) if close_code in COUNTED_CLOSES else "other").inc()
        if error is not None:   # what closed it, by the table's code (never a client's value)
            metrics.errors.labels(code=error).inc()

    def batcher(self, model: OnnxModel) -> WindowBatcher:
        role = model.bundle.role
        if role not in self._batchers:
            self._batchers[role] = WindowBatcher(model)
        return self._batchers[role]

    def close(self) -> None:
        for b in self._batchers.values():
            b.close()
        self._batchers.clear()


def check_origin(websocket: WebSocket, allowed: list[str]) -> None:
    """Browsers send Origin and let any page open a WebSocket anywhere: take only this
    server's own pages and the SER_CORS_ORIGINS. Clients that are not browsers send none.
    (The Host this compares with has passed SER_ALLOWED_HOSTS: a rebinding name never gets here.)"""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed or urlsplit(origin).netloc == websocket.headers.get("host"):
        return
    raise StreamError("forbidden_origin", f"pages from {origin[:200]} may not open streams here (SER_CORS_ORIGINS)")


def check_key(websocket: WebSocket, expected: SecretStr | None) -> None:
    if expected is None:
        return
    offered = [p[len(KEY_PREFIX):] for p in websocket.scope.get("subprotocols", []) if p.startswith(KEY_PREFIX)]
    if not any(key_matches(k, expected) for k in [websocket.headers.get("x-api-key"), *offered]):
        raise StreamError("unauthorized", "missing or wrong API key; send it in the X-API-Key header or as the "
                                          f"WebSocket subprotocol {KEY_PREFIX}<key>")


def subprotocol(websocket: WebSocket) -> str | None:
    """A browser fails the handshake unless the server picks one of the subprotocols it offered."""
    offered = websocket.scope.get("subprotocols", [])
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if p.startswith(KEY_PREFIX)), None)
