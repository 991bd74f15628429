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
from service.fallback import asks_teacher, threshold_for
from service.inference import OnnxModel, Prediction, rounded
from service.speech import SpeechGate

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
    """The loaded bundles, the speech gate and the rule between them. `auto`: the student
    answers, and the teacher (when there is one) where service.fallback says the student is
    unsure over the caller's labels; never for a clip without speech. `fallback_threshold`
    (SER_FALLBACK_THRESHOLD) overrides the student bundle's own (service.fallback.threshold_for)."""

    student: OnnxModel
    teacher: OnnxModel | None
    fallback_threshold: float | None = None
    gate: SpeechGate | None = None   # None: every window counts, speech or not

    @property
    def threshold(self) -> float:
        """The logit margin below which `auto` asks the teacher."""
        return threshold_for(self.student.bundle, self.fallback_threshold)

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
        """(C,) calibrated probabilities of the student: whether its fallback answers (service.fallback)."""
        return bool(asks_teacher(probs, self.threshold, self.student.bundle.temperature))

    def answer(self, data: bytes | np.ndarray, choice: ModelChoice, *, max_duration_s: float | None,
               labels: tuple[str, ...] | None = None, observe: Observe | None = None) -> Answer:
        """The answer over `labels` (a subset of the bundles' labels; None: all). `data`: the
        bytes of an audio file, or a waveform of samples (N,) at 16 kHz. Raises AudioError
        (with its stable code) for audio that cannot be used."""
        if isinstance(data, np.ndarray):
            audio = checked_waveform(data, max_duration_s=max_duration_s)
        else:
            audio = load_audio(data, max_duration_s=max_duration_s)
        model, fallback = self.first(choice), self.fallback(choice)
        pred, ms = self._timed(model, audio, labels, observe)
        fell_back = (fallback is not None and not pred.no_speech
                     and self.unsure(np.fromiter(pred.probabilities.values(), float)))
        if fell_back:
            model = fallback
            pred, ms2 = self._timed(model, audio, labels, observe)
            ms += ms2
        return Answer(pred, model, fell_back, len(audio) / SAMPLE_RATE, ms)

    def _timed(self, model: OnnxModel, audio, labels, observe: Observe | None) -> tuple[Prediction, float]:
        t0 = time.perf_counter()
        pred = model.predict(audio, gate=self.gate, labels=labels)
        seconds = time.perf_counter() - t0
        if observe is not None:
            observe(model, seconds)
        return pred, seconds * 1000


def rounded_probabilities(labels, probs) -> dict[str, float]:
    return {name: rounded(p) for name, p in zip(labels, probs)}


NO_SCORES = {"label": None, "confidence": None, "probabilities": {}, "top_k": []}   # no speech: no emotion


def speech_fields(no_speech: bool, share: float | None) -> dict:
    """What every answer (a clip, a window, a row, a stream event) says about speech."""
    return {"no_speech": no_speech, "speech_share": None if share is None or share != share else round(share, 3)}


def scores(labels: tuple[str, ...], probs: np.ndarray | None, top_k: int) -> dict:
    """The answer for a clip or a stream (mean window probabilities, (C,)): label, confidence,
    every label's probability and the `top_k` best, rounded; NO_SCORES for None (no speech)."""
    if probs is None:
        return dict(NO_SCORES)
    best = int(probs.argmax())
    ranked = sorted(zip(labels, probs), key=lambda kv: kv[1], reverse=True)[:top_k]
    return {"label": labels[best], "confidence": rounded(probs[best]),
            "probabilities": rounded_probabilities(labels, probs),
            "top_k": [{"label": n, "probability": rounded(p)} for n, p in ranked]}


def window(labels: tuple[str, ...], start_s: float, end_s: float, probs: np.ndarray) -> dict:
    """One window of a clip (`segments`) or of a stream (its window events): start and end in
    seconds, label, confidence and every label's probability, rounded, and whether it holds
    speech (a window without speech: probs of NaN, no label and no probabilities)."""
    held = not np.isnan(probs).any()
    return {"start_s": round(float(start_s), 3), "end_s": round(float(end_s), 3),
            **({"label": labels[int(probs.argmax())], "confidence": rounded(probs.max()),
                "probabilities": rounded_probabilities(labels, probs)} if held
               else {"label": None, "confidence": None, "probabilities": {}})}


def model_ref(model: OnnxModel) -> dict:
    b = model.bundle
    return {"name": b.name, "version": b.version, "role": b.role, "precision": b.precision}


def segments(a: Answer) -> list[dict]:
    """Per-window results of a clip, over the labels it was answered over."""
    p = a.prediction
    return [{**window(p.labels, s, min(float(s) + p.window_s, a.duration_s), w), **speech_fields(not held, share)}
            for s, w, held, share in zip(p.window_starts, p.window_probs, p.window_speech, p.window_shares)]
