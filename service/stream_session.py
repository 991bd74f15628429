"""One accepted live stream: frames in, one event per window out (docs/api.md, "Live streams").

Each stream runs three tasks: the receiver reads frames and cuts windows, the collector
awaits each window's probabilities in order and turns them into events, the sender writes
events to the socket. The queues between them are bounded: windows waiting for a model
stop the receiver, which stops reading the socket (a client sending faster than real time
is slowed down by TCP, and nothing is dropped); events waiting for a client that has
stopped reading hold the stream back too, and end it with `slow_consumer` (1013) when the
client has read nothing for SER_STREAM_IDLE_S. A client that brings audio far below real time
is ended with `stream_too_slow` (`MinimumRate`): a slot is held with audio, not with a trickle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from service.answer import model_ref, scores, speech_fields, window
from service.audio import SAMPLE_RATE
from service.errors import CLOSE_ABNORMAL, CLOSE_CODES, CLOSE_NO_STATUS, CLOSE_NORMAL
from service.inference import OnnxModel, non_finite_output
from service.labels import restrict
from service.stream_admission import Admission, Streams
from service.streaming import StreamError, Window, Windower, decode_pcm, fit, parse_control

errors = logging.getLogger("ser")
MAX_IN_FLIGHT = 16                # windows of one stream waiting for a model before the receiver waits too,
IN_FLIGHT_BYTES = 1 << 20         # and at most about this much of their audio (2 of the teacher's 6 s windows)


class ClientLeft(Exception):
    def __init__(self, code: int, reason: str = ""):
        super().__init__(code)
        # the frame-level limits (service/websocket.py) close with the table's code as the reason
        self.code, self.error = code, reason if CLOSE_CODES.get(reason) == code else None


@dataclass
class Pending:
    window: Window
    arrived: float                 # perf_counter() when its last sample arrived
    probs: asyncio.Future | None   # the model's answer; None for a window without speech (never run)


class MinimumRate:
    """A stream must bring at least `speed` seconds of audio per second of waiting for it, over
    every `window_s` of waiting. Only the time spent waiting for the client's frames counts: a
    stream the server holds back (its windows waiting for a model) is never too slow."""

    def __init__(self, speed: float, window_s: float):
        self.speed, self.window_s = speed, window_s
        self.waited = self.audio_s = 0.0

    def add(self, audio_s: float, waited_s: float) -> None:
        self.waited, self.audio_s = self.waited + waited_s, self.audio_s + audio_s
        if self.waited < self.window_s:
            return
        if self.audio_s < self.speed * self.waited:
            raise StreamError("stream_too_slow", f"{self.audio_s:.2f} s of audio in the last {self.waited:.1f} s; at "
                                                 f"least {self.speed:g}x real time is needed (SER_STREAM_MIN_SPEED "
                                                 "over SER_STREAM_RATE_WINDOW_S)")
        self.waited = self.audio_s = 0.0


class Session:
    """One accepted stream."""

    def __init__(self, websocket: WebSocket, streams: Streams, admission: Admission):
        settings = streams.runtime.settings
        self.ws, self.params = websocket, admission.params
        self.model, self.fallback = admission.model, admission.fallback
        self.settings, self.metrics, self.models = settings, streams.runtime.metrics, streams.runtime.loaded
        self.batcher = streams.batcher(self.model)
        self.fallback_batcher = streams.batcher(self.fallback) if self.fallback else None
        b = self.model.bundle
        self.windower = Windower(self.params.sample_rate, replace(b.windowing, hop_s=self.params.hop_s))
        self.rate = MinimumRate(settings.stream_min_speed, settings.stream_rate_window_s)
        self.max_frames = int(settings.stream_max_s * self.params.sample_rate)   # input samples taken at most
        self.received = 0
        self.windows = self.speech_windows = 0
        self.gate = streams.runtime.gate
        self.labels = self.params.label_set(b.labels) or b.labels   # what the events answer over
        self.prob_sum = np.zeros(len(self.labels))
        in_flight = max(2, min(MAX_IN_FLIGHT, IN_FLIGHT_BYTES // (4 * self.windower.win)))
        self.in_flight: asyncio.Queue[Pending | None] = asyncio.Queue(in_flight)
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
            if isinstance(first, (ClientLeft, StreamError)):
                raise first from None
            if isinstance(first, WebSocketDisconnect):
                raise ClientLeft(first.code) from None
            if isinstance(first, OSError):   # the connection broke while an event was being sent
                raise ClientLeft(CLOSE_ABNORMAL) from None
            errors.error("stream failed", exc_info=first)
            raise StreamError("internal_error", f"unexpected {type(first).__name__}; see the server log") from None
        try:
            await self.ws.send_text(json.dumps(self._summary()))
            await self.ws.close(CLOSE_NORMAL)
        except (WebSocketDisconnect, OSError):
            return CLOSE_ABNORMAL
        return CLOSE_NORMAL

    async def _receive(self) -> None:
        idle_s = self.settings.stream_idle_s
        while self.received < self.max_frames:
            waiting = time.monotonic()
            try:   # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the TaskGroup's cancel
                async with asyncio.timeout(idle_s):
                    message = await self.ws.receive()
            except TimeoutError:
                raise StreamError("stream_idle", f"no frame for {idle_s:g} s (SER_STREAM_IDLE_S)") from None
            if message["type"] == "websocket.disconnect":
                raise ClientLeft(message.get("code", CLOSE_NO_STATUS), message.get("reason") or "")
            if message.get("bytes") is not None:
                await self._audio(message["bytes"], time.monotonic() - waiting)
            elif parse_control(message.get("text") or "") == "end":
                break
        arrived = time.perf_counter()
        for w in self.windower.finish():
            await self._submit(w, arrived)
        await self.in_flight.put(None)

    async def _audio(self, frame: bytes, waited_s: float) -> None:
        arrived = time.perf_counter()
        limit = self.settings.stream_max_frame_bytes
        if len(frame) > limit:   # uvicorn refuses larger messages first (service/websocket.py); kept for other servers
            raise StreamError("frame_too_large", f"a frame of {len(frame)} bytes; at most {limit} "
                                                 "(SER_STREAM_MAX_FRAME_BYTES)")
        x = decode_pcm(frame, self.params.encoding)[:self.max_frames - self.received]   # SER_STREAM_MAX_S
        self.received += len(x)
        self.rate.add(len(x) / self.params.sample_rate, waited_s)
        step = max(1, round(self.params.hop_s * self.params.sample_rate))
        for i in range(0, len(x), step):   # a hop at a time: a long frame never makes all its windows at once
            for w in self.windower.push(x[i:i + step]):
                await self._submit(w, arrived)

    async def _submit(self, w: Window, arrived: float) -> None:
        # The gate reads only the window's real audio, as /predict's does, in a worker thread;
        # a window without speech is not run through the model, as on /predict.
        if self.gate and not await asyncio.get_running_loop().run_in_executor(
                None, self.gate.holds_speech, w.samples[:w.end - w.start]):
            return await self.in_flight.put(Pending(w, arrived, None))
        await self.in_flight.put(Pending(w, arrived, await self.batcher.probs(w.samples)))

    def _restrict(self, probs: np.ndarray, model: OnnxModel) -> np.ndarray:
        """The caller's labels (service.labels), before the fallback rule looks at the confidence."""
        return restrict(probs, model.bundle.labels, self.labels if self.labels != model.bundle.labels else None)

    async def _collect(self) -> None:
        while (p := await self.in_flight.get()) is not None:
            model = self.model
            self.windows += 1
            if p.probs is None:   # no speech: answered as such, and not counted
                await self._post((self._event(p.window, None, model, False), p.arrived, model.bundle.role))
                continue
            probs = self._restrict(await p.probs, model)
            fell_back = self.fallback is not None and self.models.unsure(probs)
            if fell_back:   # model=auto: /predict's rule, per window, on the caller's labels
                model, b = self.fallback, self.fallback.bundle
                window_in = fit(p.window.samples, b.windowing)
                probs = self._restrict(await (await self.fallback_batcher.probs(window_in)), model)
            if np.isnan(probs).any():
                raise StreamError("invalid_audio", non_finite_output().message)
            self.speech_windows += 1
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

    def _event(self, w: Window, probs: np.ndarray | None, model: OnnxModel, fell_back: bool) -> dict:
        """A window event; `probs` None for a window without speech."""
        labels, top_k = self.labels, self.params.top_k
        held = probs is not None
        return {"type": "window",
                **window(labels, w.start / SAMPLE_RATE, w.end / SAMPLE_RATE, probs if held else np.full(len(labels), np.nan)),
                "top_k": scores(labels, probs, top_k)["top_k"],
                **speech_fields(not held, float(held) if self.gate else None),
                "model": model_ref(model), "fell_back": fell_back}

    def _summary(self) -> dict:
        """The mean over the windows that hold speech; no_speech when none does."""
        n = self.speech_windows
        share = n / self.windows if self.gate and self.windows else None
        return {"type": "summary", "duration_s": round(self.windower.duration_s, 4),
                **scores(self.labels, self.prob_sum / n if n else None, self.params.top_k),
                **speech_fields(n == 0, share), "windows": self.windows, "speech_windows": n}
