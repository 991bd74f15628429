"""WebSocket /stream: live PCM in, one emotion event per hop out (docs/api.md, "Live streams").

Each stream runs three tasks: the receiver reads frames and cuts windows, the collector
awaits each window's probabilities in order and turns them into events, the sender writes
events to the socket. The queues between them are bounded: windows waiting for a model
stop the receiver, which stops reading the socket (a client sending faster than real time
is slowed down by TCP, and nothing is dropped); events waiting for a client that has
stopped reading hold the stream back too, and end it with `slow_consumer` (1013) when the
client has read nothing for SER_STREAM_IDLE_S.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
from fastapi import APIRouter, WebSocket
from pydantic import SecretStr
from starlette.websockets import WebSocketDisconnect

from service.batching import WindowBatcher
from service.deps import key_matches
from service.audio import SAMPLE_RATE
from service.fallback import asks_teacher
from service.inference import OnnxModel, non_finite_output, rounded
from service.runtime import Runtime
from service.streaming import CLOSE_CODES, StreamError, StreamParams, Window, Windower, decode_pcm, fit

router = APIRouter()
log = logging.getLogger("ser.access")   # one line per stream, like the request log
errors = logging.getLogger("ser")
SUBPROTOCOL = "ser.stream"        # offered with the key, it is the one the server picks: the key is not echoed
KEY_PREFIX = "ser.key."           # Sec-WebSocket-Protocol: ser.key.<key>, for browsers, which cannot set headers
MAX_IN_FLIGHT = 16                # windows of one stream waiting for a model before the receiver waits too
CLOSE_TIMEOUT_S = 5.0             # for the error frame and close handshake to a client that may not read


class Streams:
    """The open streams of one app, and the window batchers (one per model) they share."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.open = 0
        self._batchers: dict[str, WindowBatcher] = {}

    def batcher(self, model: OnnxModel) -> WindowBatcher:
        role = model.bundle.role
        if role not in self._batchers:
            self._batchers[role] = WindowBatcher(model)
        return self._batchers[role]

    def close(self) -> None:
        for b in self._batchers.values():
            b.close()
        self._batchers.clear()


class ClientLeft(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    streams: Streams = websocket.app.state.streams
    metrics = streams.runtime.metrics
    started, sid = time.perf_counter(), uuid.uuid4().hex
    session, close_code, error = None, 1000, None
    try:
        params, models = _admit(websocket, streams)
        await websocket.accept(subprotocol=_subprotocol(websocket))
        streams.open += 1
        metrics.streams_open.inc()
        try:
            session = Session(websocket, streams, params, *models)
            close_code = await session.run()
        finally:
            streams.open -= 1
            metrics.streams_open.dec()
    except StreamError as e:
        close_code, error = e.close_code, e.code
        await _fail(websocket, e)
    metrics.stream_closes.labels(code=_close_label(close_code)).inc()
    log.info(json.dumps({
        "stream_id": sid, "path": "/stream", "close_code": close_code, "error": error,
        "seconds": round(time.perf_counter() - started, 3), "windows": session.windows if session else 0,
        "stream_s": round(session.windower.duration_s, 3) if session else 0.0,
        "client": (websocket.client.host if websocket.client else ""),
    }))


# The codes a close is counted under; a client may close with any code from 1000 to 4999, and
# each one would otherwise become a metric series of its own.
COUNTED_CLOSES = {1000, 1001, 1005, 1006, *CLOSE_CODES.values()}


def _close_label(code: int) -> str:
    return str(code) if code in COUNTED_CLOSES else "other"


def _admit(websocket: WebSocket, streams: Streams) -> tuple[StreamParams, tuple[OnnxModel, OnnxModel | None]]:
    """Checks made before any audio: origin, key, parameters, models, room. Raises StreamError."""
    runtime = streams.runtime
    settings = runtime.settings
    _check_origin(websocket, settings.cors_origins)
    _check_key(websocket, settings.api_key)
    params = StreamParams.parse(dict(websocket.query_params))
    if not runtime.ready:
        raise StreamError("not_ready", "the models are still loading")
    if params.model == "teacher":
        if runtime.teacher is None:
            raise StreamError("teacher_unavailable",
                              "no teacher model is loaded; set SER_TEACHER_BUNDLE or use model=student")
        models = (runtime.teacher, None)
    else:   # auto falls back per window to a teacher with the same labels, when one is loaded
        teacher = runtime.teacher if params.model == "auto" else None
        same = teacher is not None and teacher.bundle.labels == runtime.student.bundle.labels
        models = (runtime.student, teacher if same else None)
    params.check_hop(models[0].bundle.window_s)
    if streams.open >= settings.max_streams:
        raise StreamError("overloaded", f"{streams.open} streams are open, the most this service takes "
                                        "(SER_MAX_STREAMS); retry shortly")
    return params, models


def _check_origin(websocket: WebSocket, allowed: list[str]) -> None:
    """Browsers send Origin and let any page open a WebSocket anywhere: take only this
    server's own pages and the SER_CORS_ORIGINS. Clients that are not browsers send none."""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed or urlsplit(origin).netloc == websocket.headers.get("host"):
        return
    raise StreamError("forbidden_origin", f"pages from {origin} may not open streams here (SER_CORS_ORIGINS)")


def _check_key(websocket: WebSocket, expected: SecretStr | None) -> None:
    if expected is None:
        return
    offered = [p[len(KEY_PREFIX):] for p in websocket.scope.get("subprotocols", []) if p.startswith(KEY_PREFIX)]
    if not any(key_matches(k, expected) for k in [websocket.headers.get("x-api-key"), *offered]):
        raise StreamError("unauthorized", "missing or wrong API key; send it in the X-API-Key header or as the "
                                          f"WebSocket subprotocol {KEY_PREFIX}<key>")


def _subprotocol(websocket: WebSocket) -> str | None:
    """A browser fails the handshake unless the server picks one of the subprotocols it offered."""
    offered = websocket.scope.get("subprotocols", [])
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if p.startswith(KEY_PREFIX)), None)


async def _fail(websocket: WebSocket, e: StreamError) -> None:
    """The error frame, then the close code; given up on after CLOSE_TIMEOUT_S."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            if websocket.client_state.name == "CONNECTING":
                await websocket.accept(subprotocol=_subprotocol(websocket))
            await websocket.send_text(json.dumps({"type": "error", "code": e.code, "message": e.message}))
            await websocket.close(e.close_code, reason=e.code)
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        pass   # the client has gone or does not read: nothing more to tell it


@dataclass
class Pending:
    window: Window
    arrived: float                 # perf_counter() when its last sample arrived
    probs: asyncio.Future


class Session:
    """One accepted stream."""

    def __init__(self, websocket: WebSocket, streams: Streams, params: StreamParams,
                 model: OnnxModel, fallback: OnnxModel | None):
        settings = streams.runtime.settings
        self.ws, self.params, self.model, self.fallback = websocket, params, model, fallback
        self.settings, self.metrics = settings, streams.runtime.metrics
        self.batcher = streams.batcher(model)
        self.fallback_batcher = streams.batcher(fallback) if fallback else None
        b = model.bundle
        self.windower = Windower(params.sample_rate, b.window_s, params.hop_s, b.pad)
        self.max_frames = int(settings.stream_max_s * params.sample_rate)   # input samples taken at most
        self.received = 0
        self.windows = 0
        self.prob_sum = np.zeros(len(b.labels))
        self.in_flight: asyncio.Queue[Pending | None] = asyncio.Queue(MAX_IN_FLIGHT)
        self.outbox: asyncio.Queue[tuple[dict, float, str] | None] = asyncio.Queue(settings.stream_send_queue)

    async def run(self) -> int:
        """Until the end, the client leaving or an error; returns the close code."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive())
                tasks.create_task(self._collect())
                tasks.create_task(self._send())
        except BaseExceptionGroup as group:
            first = group.exceptions[0]
            if isinstance(first, ClientLeft):
                return first.code
            if isinstance(first, StreamError):
                raise first from None
            if isinstance(first, WebSocketDisconnect):
                return first.code
            errors.error("stream failed", exc_info=first)
            raise StreamError("internal_error", f"unexpected {type(first).__name__}; see the server log") from None
        try:
            await self.ws.send_text(json.dumps(self._summary()))
            await self.ws.close(1000)
        except (WebSocketDisconnect, OSError):
            return 1006
        return 1000

    async def _receive(self) -> None:
        while self.received < self.max_frames:
            try:   # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the TaskGroup's cancel
                async with asyncio.timeout(self.settings.stream_idle_s):
                    message = await self.ws.receive()
            except TimeoutError:
                raise StreamError("stream_idle", f"no frame for {self.settings.stream_idle_s:g} s "
                                                 "(SER_STREAM_IDLE_S)") from None
            if message["type"] == "websocket.disconnect":
                raise ClientLeft(message.get("code", 1005))
            if message.get("bytes") is not None:
                await self._audio(message["bytes"])
            elif _is_end(message.get("text")):
                break
        arrived = time.perf_counter()
        for w in self.windower.finish():
            await self._submit(w, arrived)
        await self.in_flight.put(None)

    async def _audio(self, frame: bytes) -> None:
        arrived = time.perf_counter()
        limit = self.settings.stream_max_frame_bytes
        if len(frame) > limit:
            raise StreamError("frame_too_large", f"a frame of {len(frame)} bytes; at most {limit} "
                                                 "(SER_STREAM_MAX_FRAME_BYTES)")
        x = decode_pcm(frame, self.params.encoding)[:self.max_frames - self.received]   # SER_STREAM_MAX_S
        self.received += len(x)
        for w in self.windower.push(x):
            await self._submit(w, arrived)

    async def _submit(self, w: Window, arrived: float) -> None:
        await self.in_flight.put(Pending(w, arrived, self.batcher.probs(w.samples)))

    async def _collect(self) -> None:
        while (p := await self.in_flight.get()) is not None:
            probs, model = await p.probs, self.model
            fell_back = bool(self.fallback and asks_teacher(probs, self.settings.fallback_threshold))
            if fell_back:   # model=auto: /predict's rule, per window
                model, b = self.fallback, self.fallback.bundle
                probs = await self.fallback_batcher.probs(fit(p.window.samples, round(b.window_s * SAMPLE_RATE), b.pad))
            if np.isnan(probs).any():
                raise StreamError("invalid_audio", non_finite_output().message)
            self.windows += 1
            self.prob_sum += probs
            await self._post((self._event(p.window, probs, model, fell_back), p.arrived, model.bundle.role))
        await self._post(None)

    async def _post(self, item) -> None:
        """Queue an event for the sender. A full queue holds the stream back (the receiver
        then waits too); one that stays full for SER_STREAM_IDLE_S means the client has
        stopped reading."""
        try:
            async with asyncio.timeout(self.settings.stream_idle_s):
                await self.outbox.put(item)
        except TimeoutError:
            raise StreamError("slow_consumer", f"the client has not read its events for "
                                               f"{self.settings.stream_idle_s:g} s (SER_STREAM_IDLE_S); "
                                               f"{self.outbox.qsize()} are waiting (SER_STREAM_SEND_QUEUE)") from None

    async def _send(self) -> None:
        while (item := await self.outbox.get()) is not None:
            event, arrived, role = item
            lag = time.perf_counter() - arrived
            event["lag_ms"] = round(lag * 1000, 1)
            await self.ws.send_text(json.dumps(event))
            self.metrics.stream_event_lag.observe(lag)
            self.metrics.stream_windows.labels(model=role).inc()

    def _event(self, w: Window, probs: np.ndarray, model: OnnxModel, fell_back: bool) -> dict:
        b = model.bundle
        return {"type": "window", "start_s": round(w.start / SAMPLE_RATE, 3), "end_s": round(w.end / SAMPLE_RATE, 3),
                **_scores(b.labels, probs, self.params.top_k),
                "model": {"name": b.name, "version": b.version, "role": b.role, "precision": b.precision},
                "fell_back": fell_back}

    def _summary(self) -> dict:
        scores = (_scores(self.model.bundle.labels, self.prob_sum / self.windows, self.params.top_k) if self.windows
                  else {"label": None, "confidence": None, "probabilities": {}, "top_k": []})
        return {"type": "summary", "duration_s": round(self.windower.duration_s, 4), **scores, "windows": self.windows}


def _scores(labels: tuple[str, ...], probs: np.ndarray, top_k: int) -> dict:
    best = int(probs.argmax())
    ranked = sorted(zip(labels, probs), key=lambda kv: kv[1], reverse=True)[:top_k]
    return {"label": labels[best], "confidence": rounded(probs[best]),
            "probabilities": {n: rounded(p) for n, p in zip(labels, probs)},
            "top_k": [{"label": n, "probability": rounded(p)} for n, p in ranked]}


def _is_end(text: str | None) -> bool:
    """True for {"type": "end"}; anything else in a text frame is an error."""
    try:
        message = json.loads(text or "")
    except json.JSONDecodeError:
        raise StreamError("invalid_message", "a text frame must be JSON: {\"type\": \"end\"}") from None
    if isinstance(message, dict) and message.get("type") == "end":
        return True
    raise StreamError("invalid_message", f"unknown message {str(text)[:80]!r}; the only one is {{\"type\": \"end\"}}; "
                                         "audio goes in binary frames")
