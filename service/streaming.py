"""Live streams, without the transport: parameters, PCM frames, windows as audio arrives, errors.

A stream is cut into windows exactly as `/predict` cuts a clip (`service.audio.window_starts`,
`fill`) and each window goes through the same calibrated model output (`OnnxModel.window_probs`),
so the same audio gives the same per-window probabilities either way. One difference is
unavoidable: a live stream has no end to measure silence against, so it is never trimmed;
its windows start at stream time 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.audio import MIN_DURATION_S, SAMPLE_RATE, Windowing, fill, resampler, window_starts
from service.errors import ERRORS, validation_problems
from service.labels import LabelSetError, parse_label_set

ENCODINGS = {"pcm_s16le": (np.dtype("<i2"), 1 / 32768), "pcm_f32le": (np.dtype("<f4"), 1.0)}


class StreamParams(BaseModel):
    """The query parameters of `/stream`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    model: Literal["student", "teacher", "auto"] = "student"
    sample_rate: int = Field(SAMPLE_RATE, ge=8_000, le=48_000)
    encoding: Literal["pcm_s16le", "pcm_f32le"] = "pcm_s16le"
    hop_s: float = Field(0.5, ge=0.25)   # at most the window, checked against the bundle (`check_hop`)
    top_k: int = Field(3, ge=1, le=64)
    labels: str | None = None   # the caller's label set, checked against the bundle (`label_set`)

    @classmethod
    def parse(cls, query: dict[str, str]) -> StreamParams:
        try:
            return cls(**query)
        except ValidationError as e:
            raise StreamError("invalid_parameter", validation_problems(e.errors(), ("query",))) from None

    def label_set(self, labels: tuple[str, ...]) -> tuple[str, ...] | None:
        try:
            return parse_label_set(self.labels, labels)
        except LabelSetError as e:
            raise StreamError("invalid_parameter", f"query.labels: {e}") from None

    def check_hop(self, window_s: float) -> None:
        if self.hop_s > window_s:
            raise StreamError("invalid_parameter", f"query.hop_s: {self.hop_s:g} s is longer than the model's "
                                                   f"window of {window_s:g} s; use 0.25 to {window_s:g}")


class StreamError(Exception):
    """Ends a stream with an error frame and the close code of its `code` (service/errors.py);
    without `message`, the table's own wording."""

    def __init__(self, code: str, message: str | None = None):
        spec = ERRORS[code]
        message = spec.example if message is None else message
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, spec.close


MAX_CONTROL_BYTES = 1024   # {"type": "end"} is 15: a text frame past this is refused unparsed


def parse_control(text: str) -> str:
    """A text frame -> the control message's type (only "end"). Anything else, however built
    (not JSON, too long, nested too deep for the parser), is `invalid_message`."""
    if len(text) > MAX_CONTROL_BYTES:
        raise StreamError("invalid_message", f"a text frame of {len(text)} characters; control messages are at most "
                                             f"{MAX_CONTROL_BYTES}: {{\"type\": \"end\"}}")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):   # RecursionError: nesting deeper than the parser goes
        raise StreamError("invalid_message", "a text frame must be JSON: {\"type\": \"end\"}") from None
    if isinstance(message, dict) and message.get("type") == "end":
        return "end"
    raise StreamError("invalid_message", f"unknown message {text[:80]!r}; the only one is {{\"type\": \"end\"}}; "
                                         "audio goes in binary frames")


def decode_pcm(frame: bytes, encoding: str) -> np.ndarray:
    """A binary frame of raw mono PCM -> (n,) float32 in [-1, 1] (16-bit scaled as libsndfile does)."""
    dtype, scale = ENCODINGS[encoding]
    if len(frame) % dtype.itemsize:
        raise StreamError("invalid_message", f"a {encoding} frame holds whole {dtype.itemsize}-byte samples; "
                                             f"this one has {len(frame)} bytes")
    x = np.frombuffer(frame, dtype=dtype).astype(np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    elif not np.isfinite(x).all():
        raise StreamError("invalid_audio", "the audio contains NaN or infinite sample values")
    return x


@dataclass(frozen=True)
class Window:
    start: int          # in 16 kHz samples of stream time
    end: int            # one past the window's last sample of real audio (a final window may be padded)
    samples: np.ndarray  # (win,) float32, the model input


class Windower:
    """Live audio at any rate -> 16 kHz (soxr's stream resampler) -> a window every hop.

    Holds only the audio from the last window's start on, so memory stays at about two
    windows whatever the stream's length; the buffer is reused, not reallocated per frame.
    """

    def __init__(self, sample_rate: int, windowing: Windowing):
        """`windowing`: the model's, with the stream's hop. Its trim_silence is not applied: a live
        stream's leading silence is gone by the time it could be told from speech."""
        self.win, self.hop, self.pad = windowing.samples, round(windowing.hop_s * SAMPLE_RATE), windowing.pad
        self._resampler = resampler(sample_rate)
        self._buf = np.empty(2 * self.win, np.float32)
        self._lo = self._hi = 0   # the audio held: _buf[_lo:_hi]
        self._offset = 0          # its stream index: stream sample _offset is _buf[_lo]
        self._next = 0            # start of the next window
        self.samples = 0          # 16 kHz samples received so far

    def push(self, x: np.ndarray) -> list[Window]:
        """Add audio at the input rate; returns the whole windows it completes."""
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        self._append(x)
        out = []
        while self._next + self.win <= self.samples:
            out.append(self._window(self._next))
            self._next += self.hop
        self._drop_before(self._next - self.hop)   # pad "none" ends the last window with the audio: keep a hop more
        return out

    def finish(self) -> list[Window]:
        """The end of the stream: the whole windows still to come, then the final partial
        window or the one padded window by `/predict`'s rule (none for a stream too short
        for `/predict`)."""
        out = self.push(np.zeros(0, np.float32))
        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._resampler = None
            out += self.push(np.zeros(0, np.float32))
        if self.samples < MIN_DURATION_S * SAMPLE_RATE:   # too short to classify, as /predict says
            return out
        emitted = self._next // self.hop   # the whole windows, all sent by now
        return out + [self._window(s) for s in window_starts(self.samples, self.win, self.hop, self.pad)[emitted:]]

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def _append(self, x: np.ndarray) -> None:
        if self._hi + len(x) > len(self._buf):   # move what is held to the front, growing if it must
            held = self._hi - self._lo
            buf = self._buf if held + len(x) <= len(self._buf) else np.empty(2 * (held + len(x)), np.float32)
            buf[:held] = self._buf[self._lo:self._hi]
            self._buf, self._lo, self._hi = buf, 0, held
        self._buf[self._hi:self._hi + len(x)] = x
        self._hi += len(x)
        self.samples += len(x)

    def _window(self, start: int) -> Window:
        i = self._lo + start - self._offset
        part = self._buf[i:min(i + self.win, self._hi)]
        return Window(start, start + len(part), part.copy() if len(part) == self.win else fill(part, self.win, self.pad))

    def _drop_before(self, index: int) -> None:
        cut = min(max(index, 0), self.samples) - self._offset
        if cut > 0:
            self._lo, self._offset = self._lo + cut, self._offset + cut


def fit(window: np.ndarray, windowing: Windowing) -> np.ndarray:
    """A window for a model cutting `windowing`: its last samples, or filled up to its length."""
    n = windowing.samples
    return window[-n:] if len(window) >= n else fill(window, n, windowing.pad)
