"""From the bytes of one file to an answer: decode, the chosen model, and the fallback rule.

The one code path behind `/predict` and `ser score`, so the service and a batch run over an
archive give the same probabilities for the same file and model. Torch-free, and free of
the web framework, so that batch workers import only the front end and onnxruntime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.audio import SAMPLE_RATE, checked_waveform, load_audio
from service.fallback import asks_teacher
from service.inference import OnnxModel, Prediction, rounded

ModelChoice = Literal["auto", "student", "teacher"]
Observe = Callable[[OnnxModel, float], None]   # (model, seconds of one forward pass)


@dataclass(frozen=True)
class Answer:
    prediction: Prediction
    model: OnnxModel
    fell_back: bool
    duration_s: float
    inference_ms: float


@dataclass(frozen=True)
class Models:
    """The loaded bundles and the rule between them. `auto`: the student answers, and the
    teacher (when there is one) where service.fallback says the student is unsure."""

    student: OnnxModel
    teacher: OnnxModel | None
    fallback_threshold: float

    def first(self, choice: ModelChoice) -> OnnxModel:
        if choice != "teacher":
            return self.student
        if self.teacher is None:
            raise LookupError("no teacher model is loaded")
        return self.teacher

    def answer(self, data: bytes | np.ndarray, choice: ModelChoice, *, max_duration_s: float | None,
               observe: Observe | None = None) -> Answer:
        """`data`: the bytes of an audio file, or a waveform of samples (N,) at 16 kHz. Raises
        AudioError (with its stable code) for audio that cannot be used."""
        if isinstance(data, np.ndarray):
            audio = checked_waveform(data, max_duration_s=max_duration_s)
        else:
            audio = load_audio(data, max_duration_s=max_duration_s)
        model = self.first(choice)
        pred, ms = _timed(model, audio, observe)
        fell_back = (choice == "auto" and self.teacher is not None
                     and bool(asks_teacher(np.fromiter(pred.probabilities.values(), float), self.fallback_threshold)))
        if fell_back:
            model = self.teacher
            pred, ms2 = _timed(model, audio, observe)
            ms += ms2
        return Answer(pred, model, fell_back, len(audio) / SAMPLE_RATE, ms)


def rounded_probabilities(labels, probs) -> dict[str, float]:
    return {name: rounded(p) for name, p in zip(labels, probs)}


def segments(a: Answer) -> list[dict]:
    """Per-window results as answers report them: start and end in seconds, label, confidence
    and every label's probability, rounded."""
    p, labels = a.prediction, a.model.bundle.labels
    return [{"start_s": round(float(s), 3), "end_s": round(min(float(s) + p.window_s, a.duration_s), 3),
             "label": labels[int(w.argmax())], "confidence": rounded(w.max()),
             "probabilities": rounded_probabilities(labels, w)}
            for s, w in zip(p.window_starts, p.window_probs)]


def _timed(model: OnnxModel, audio, observe: Observe | None) -> tuple[Prediction, float]:
    t0 = time.perf_counter()
    pred = model.predict(audio)
    seconds = time.perf_counter() - t0
    if observe is not None:
        observe(model, seconds)
    return pred, seconds * 1000
