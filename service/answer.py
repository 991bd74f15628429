"""From the bytes of one file to an answer: decode, the chosen model, and the fallback rule.

The one code path behind `/predict` and `ser score`, so the service and a batch run over an
archive give the same probabilities for the same file and model; `/stream` applies the same
rule per window (`Models.fallback`, `Models.unsure`). The answer shapes are formatted here
once: `scores` (a clip's or a stream's label, confidence, probabilities, top k) and `window`
(one window of a clip or a stream). Torch-free, and free of the web framework, so that batch
workers import only the front end and onnxruntime.
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

    def fallback(self, choice: ModelChoice) -> OnnxModel | None:
        """The model that answers when the first one is unsure: the teacher, for `auto`, when
        one is loaded with the student's labels (an answer never changes its label set)."""
        if choice != "auto" or self.teacher is None or self.teacher.bundle.labels != self.student.bundle.labels:
            return None
        return self.teacher

    def unsure(self, probs: np.ndarray) -> bool:
        """(C,) calibrated probabilities of the first model: whether its fallback answers (service.fallback)."""
        return bool(asks_teacher(probs, self.fallback_threshold))

    def answer(self, data: bytes | np.ndarray, choice: ModelChoice, *, max_duration_s: float | None,
               observe: Observe | None = None) -> Answer:
        """`data`: the bytes of an audio file, or a waveform of samples (N,) at 16 kHz. Raises
        AudioError (with its stable code) for audio that cannot be used."""
        if isinstance(data, np.ndarray):
            audio = checked_waveform(data, max_duration_s=max_duration_s)
        else:
            audio = load_audio(data, max_duration_s=max_duration_s)
        model, fallback = self.first(choice), self.fallback(choice)
        pred, ms = _timed(model, audio, observe)
        fell_back = fallback is not None and self.unsure(np.fromiter(pred.probabilities.values(), float))
        if fell_back:
            model = fallback
            pred, ms2 = _timed(model, audio, observe)
            ms += ms2
        return Answer(pred, model, fell_back, len(audio) / SAMPLE_RATE, ms)


def rounded_probabilities(labels, probs) -> dict[str, float]:
    return {name: rounded(p) for name, p in zip(labels, probs)}


def scores(labels: tuple[str, ...], probs: np.ndarray, top_k: int) -> dict:
    """The answer for a clip or a stream (mean window probabilities, (C,)): label, confidence,
    every label's probability and the `top_k` best, rounded."""
    best = int(probs.argmax())
    ranked = sorted(zip(labels, probs), key=lambda kv: kv[1], reverse=True)[:top_k]
    return {"label": labels[best], "confidence": rounded(probs[best]),
            "probabilities": rounded_probabilities(labels, probs),
            "top_k": [{"label": n, "probability": rounded(p)} for n, p in ranked]}


def window(labels: tuple[str, ...], start_s: float, end_s: float, probs: np.ndarray) -> dict:
    """One window of a clip (`segments`) or of a stream (its window events): start and end in
    seconds, label, confidence and every label's probability, rounded."""
    return {"start_s": round(float(start_s), 3), "end_s": round(float(end_s), 3),
            "label": labels[int(probs.argmax())], "confidence": rounded(probs.max()),
            "probabilities": rounded_probabilities(labels, probs)}


def model_ref(model: OnnxModel) -> dict:
    b = model.bundle
    return {"name": b.name, "version": b.version, "role": b.role, "precision": b.precision}


def segments(a: Answer) -> list[dict]:
    """Per-window results of a clip."""
    p, labels = a.prediction, a.model.bundle.labels
    return [window(labels, s, min(float(s) + p.window_s, a.duration_s), w)
            for s, w in zip(p.window_starts, p.window_probs)]


def _timed(model: OnnxModel, audio, observe: Observe | None) -> tuple[Prediction, float]:
    t0 = time.perf_counter()
    pred = model.predict(audio)
    seconds = time.perf_counter() - t0
    if observe is not None:
        observe(model, seconds)
    return pred, seconds * 1000
