"""What the app holds while it runs: the loaded models, the inference limiter, the metrics."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.answer import Answer, ModelChoice, Models
from service.bundle import load_bundle
from service.errors import ApiError
from service.inference import OnnxModel
from service.memory import size_batch
from service.labels import LABELS, LabelSetError, parse_label_set
from service.metrics import Metrics
from service.speech import SpeechGate
from service.settings import UPLOAD_LARGE_SHARE, Settings

log = logging.getLogger("ser")
NO_SPEECH_LABEL = "no_speech"   # the `label` of ser_predictions_total for a clip without speech


class Limiter:
    """Bounds concurrent inferences; beyond `max_queue` waiting requests, answer 503 at once.

    Rejecting early keeps latency bounded under overload instead of letting a queue grow.
    """

    def __init__(self, concurrency: int, max_queue: int):
        self._sem = asyncio.Semaphore(concurrency)
        self._max_queue = max_queue
        self._waiting = 0
        # A thread per slot, for inference alone: cheaper to hand work to than anyio's pool, which
        # FastAPI and starlette share, so inference never waits there behind other work.
        self._threads, self._pool = concurrency, None

    def full(self) -> bool:
        return self._sem.locked() and self._waiting >= self._max_queue

    def close(self) -> None:
        """Let the inference threads end once idle (the app's shutdown, after the drain); a
        later run starts new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    @staticmethod
    def refusal() -> ApiError:
        return ApiError("overloaded", headers={"Retry-After": "1"})

    async def run(self, fn, *args):
        if self.full():
            raise self.refusal()
        self._waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
        self._pool = self._pool or ThreadPoolExecutor(self._threads, thread_name_prefix="ser-inference")
        work = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.shield(work)
        finally:
            # A request cancelled meanwhile (its client left) keeps its slot until the work is
            # done: the slots bound the inferences that run, not the requests that wait for them.
            if work.done():
                self._sem.release()
            else:
                work.add_done_callback(lambda _: self._sem.release())


class UploadBudget:
    """Bounds the bytes of the request bodies the service holds at once, whatever their state
    (arriving, parsed, waiting for a slot, being decoded); beyond it, 503 before the body is read.

    An upload announces its size (Content-Length) and reserves it for the whole request; a
    chunked one, which does not, reserves SER_MAX_UPLOAD_BYTES. Uploads over LARGE bytes may
    fill only LARGE_SHARE of the budget: large uploads that stall until their timeout cannot
    keep clips of a usual size out.
    """

    LARGE = 1_000_000      # 30 s of 16 kHz 16-bit mono
    LARGE_SHARE = UPLOAD_LARGE_SHARE

    def __init__(self, limit: int, metrics: Metrics | None = None):
        self.limit, self.held, self._gauge = limit, 0, metrics.upload_bytes if metrics else None

    def reserve(self, n: int) -> bool:
        cap = self.limit * self.LARGE_SHARE if n > self.LARGE else self.limit
        if self.held + n > cap:
            return False
        self._set(self.held + n)
        return True

    def release(self, n: int) -> None:
        self._set(self.held - n)

    def _set(self, held: int) -> None:
        self.held = held
        if self._gauge is not None:
            self._gauge.set(held)

    @staticmethod
    def refusal() -> ApiError:
        return ApiError("overloaded", headers={"Retry-After": "1", "Connection": "close"})


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.student: OnnxModel | None = None
        self.teacher: OnnxModel | None = None
        self._models: Models | None = None   # both, with the fallback rule, once loaded
        self.ready = False
        self.limiter = Limiter(settings.max_concurrency, settings.max_queue)
        self.uploads = UploadBudget(settings.max_inflight_bytes, self.metrics)

    def load(self) -> None:
        """Load and warm up the bundles; raises BundleError (fail fast) on a bad bundle."""
        s = self.settings
        threads = dict(intra_threads=s.intra_op_threads, inter_threads=s.inter_op_threads)
        self.student = OnnxModel(load_bundle(s.student_folder()), **threads)
        teacher = s.teacher_folder()
        if teacher is not None:
            self.teacher = OnnxModel(load_bundle(teacher), **threads)
        else:
            log.warning("no teacher (SER_TEACHER_BUNDLE=none, or no teacher/ in %s): serving student-only", s.models_dir)
        for m in self.models():
            m.warm_up()
            size_batch(m, s.model_memory_mb, runs=s.max_concurrency + 1)
            b = m.bundle
            self.metrics.model_info.labels(role=b.role).info(
                {"name": b.name, "version": b.version, "sha256": b.sha256, "precision": b.precision})
        gate = SpeechGate(intra_threads=s.intra_op_threads) if s.speech_gate else None
        if gate is not None:
            gate.warm_up()
        self._models = Models(self.student, self.teacher, s.fallback_threshold, gate)
        if self.teacher is not None and self._models.fallback("auto") is None:
            log.warning("the teacher's labels differ from the student's: model=auto never falls back to it")
        self.ready = True

    @property
    def loaded(self) -> Models:
        """The loaded models and the fallback rule between them."""
        return self._models

    def models(self) -> list[OnnxModel]:
        return [m for m in (self.student, self.teacher) if m is not None]

    def _observe(self, model: OnnxModel, seconds: float) -> None:
        self.metrics.inference_latency.labels(model=model.bundle.role).observe(seconds)

    @property
    def gate(self) -> SpeechGate | None:
        return self._models.gate if self._models else None

    def _answer(self, data: bytes | np.ndarray, choice: ModelChoice, labels: tuple[str, ...] | None) -> Answer:
        """Runs in a worker thread: decode, then the chosen model (and the fallback)."""
        if choice == "teacher":
            self.require_teacher()
        answer = self._models.answer(data, choice, max_duration_s=self.settings.max_duration_s, labels=labels,
                                     observe=self._observe)
        self.metrics.audio_duration.observe(answer.duration_s)
        self.metrics.predictions.labels(model=answer.model.bundle.role,
                                        label=answer.prediction.label or NO_SPEECH_LABEL).inc()
        if answer.fell_back:
            self.metrics.fallbacks.inc()
        return answer

    def model_for(self, choice: ModelChoice) -> OnnxModel:
        """The model that answers `choice` first (`auto`: the student); 503 while loading, or
        for the teacher when none is loaded."""
        if not self.ready:
            raise ApiError("not_ready")
        return self.require_teacher() if choice == "teacher" else self.student

    def require_teacher(self) -> OnnxModel:
        if self.teacher is None:
            raise ApiError("teacher_unavailable")
        return self.teacher

    @property
    def labels(self) -> tuple[str, ...]:
        """The loaded bundles' labels (the project's, before they are loaded)."""
        return self.student.bundle.labels if self.student else LABELS

    def label_set(self, text: str | None) -> tuple[str, ...] | None:
        """A caller's `labels` parameter, checked against the loaded bundles' labels."""
        try:
            return parse_label_set(text, self.labels)
        except LabelSetError as e:
            raise ApiError("invalid_parameter", f"query.labels: {e}") from None

    async def answer(self, data: bytes | np.ndarray, choice: ModelChoice, labels: tuple[str, ...] | None = None) -> Answer:
        """`data`: an audio file's bytes, or a waveform (N,) at 16 kHz (service/answer.py); the
        answer over `labels` (None: all)."""
        if not self.ready:
            raise ApiError("not_ready")
        if choice == "teacher":
            self.require_teacher()   # fail before queueing
        return await self.limiter.run(self._answer, data, choice, labels)
