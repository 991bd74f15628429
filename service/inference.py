"""onnxruntime inference of a bundle: 16 kHz audio -> windows -> logits -> one result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.audio import SAMPLE_RATE, AudioError, window_batches
from service.bundle import Bundle, BundleError
from service.labels import restrict
from service.speech import SpeechGate

MAX_BATCH = 32   # windows built and run at once at most; `OnnxModel.max_batch` may be less (service/memory.py)
PROBABILITY_DIGITS = 4   # what answers carry: float32 logits hold no more than that of meaning


@dataclass(frozen=True)
class Prediction:
    label: str | None            # None: no window holds speech
    confidence: float | None
    probabilities: dict[str, float]   # over `labels`; empty without speech
    window_probs: np.ndarray     # (W, K), calibrated per-window probabilities over `labels`; NaN rows: no speech
    window_starts: np.ndarray    # (W,) seconds from the start of the clip
    window_s: float
    labels: tuple[str, ...]      # the label set answered: the caller's subset, or the bundle's
    window_speech: np.ndarray    # (W,) bool: the window holds speech and counts in the answer
    window_shares: np.ndarray    # (W,) 1 where the window holds speech, else 0 (NaN: no gate)
    speech_share: float | None   # the share of windows that hold speech; None when no gate ran

    @property
    def no_speech(self) -> bool:
        return self.label is None


def rounded(p: float) -> float:
    """A probability as answers report it."""
    return round(float(p), PROBABILITY_DIGITS)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def non_finite_output() -> AudioError:
    return AudioError("invalid_audio", "the model's output is not finite for this audio; "
                                       "are its samples of a sane magnitude (about -1 to 1)?")


class OnnxModel:
    """One onnxruntime session for one bundle, with explicit thread counts.

    onnxruntime sizes its pools from the host's cores, not a container's CPU quota, so the
    counts are always set explicitly.
    """

    def __init__(self, bundle: Bundle, *, intra_threads: int = 1, inter_threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = inter_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(bundle.model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
            raise BundleError(f"{bundle.model_path}: onnxruntime cannot load it ({e})") from e
        self.bundle = bundle
        self.max_batch = MAX_BATCH   # windows per run; sized from SER_MODEL_MEMORY_MB when the service loads it
        self.input_name = self.session.get_inputs()[0].name
        n_out = self.session.get_outputs()[0].shape[-1]
        if n_out != len(bundle.labels):
            raise BundleError(f"{bundle.model_path}: {n_out} outputs but {len(bundle.labels)} labels in bundle.json")

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """(W, samples) float32 -> (W, C) logits, run in chunks of `max_batch` windows."""
        parts = [self.session.run(None, {self.input_name: windows[i:i + self.max_batch]})[0]
                 for i in range(0, len(windows), self.max_batch)]
        return np.concatenate(parts, axis=0)

    def windows(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) 16 kHz audio -> this bundle's input windows (W, S) and their start times (W,)."""
        return self.bundle.windowing.windows(audio)

    def window_probs(self, windows: np.ndarray) -> np.ndarray:
        """(W, S) input windows -> (W, C) calibrated probabilities; a row is NaN where the
        model's output is not finite (finite audio of extreme magnitude can overflow inside the graph)."""
        logits = self.logits(windows).astype(np.float64)
        bad = ~np.isfinite(logits).all(axis=1)
        probs = softmax(np.where(bad[:, None], 0.0, logits), self.bundle.temperature)
        probs[bad] = np.nan
        return probs

    def predict(self, audio: np.ndarray, *, gate: SpeechGate | None = None,
                labels: tuple[str, ...] | None = None) -> Prediction:
        """(N,) 16 kHz float32 audio -> utterance prediction: the mean of the probabilities of
        the windows that hold speech (all windows without a `gate`), over `labels` (a subset of
        the bundle's, renormalised; None: all). Windows without speech are not run."""
        b = self.bundle
        start, end = b.windowing.bounds(audio)
        x = audio[start:end]   # a view, not a copy; the gate reads the windows' audio in it
        parts = [(*self._gated(w, np.round(s * SAMPLE_RATE).astype(int), x, gate, labels), s + start / SAMPLE_RATE)
                 for w, s in window_batches(x, b.windowing, batch=self.max_batch)]
        probs, speech, shares, starts = (np.concatenate(part) for part in zip(*parts))
        answered = labels or b.labels
        common = dict(window_probs=probs, window_starts=starts, window_s=b.windowing.window_s, labels=answered,
                      window_speech=speech, window_shares=shares, speech_share=float(shares.mean()) if gate else None)
        if not speech.any():
            return Prediction(label=None, confidence=None, probabilities={}, **common)
        mean = probs[speech].mean(axis=0)
        best = int(mean.argmax())
        return Prediction(label=answered[best], confidence=float(mean[best]),
                          probabilities={name: float(p) for name, p in zip(answered, mean)}, **common)

    def _gated(self, windows: np.ndarray, first: np.ndarray, x: np.ndarray, gate: SpeechGate | None,
               labels: tuple[str, ...] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch of windows (W, S) starting at samples `first` of `x` -> (probabilities (W, K),
        NaN rows where there is no speech; holds speech (W,); speech shares (W,): 1 or 0, NaN
        without a gate). The gate reads each window's real audio, never its padding."""
        win = windows.shape[1]
        held = np.array([gate.holds_speech(x[i:i + win]) for i in first]) if gate else np.ones(len(windows), bool)
        shares = held.astype(float) if gate else np.full(len(windows), np.nan)
        probs = np.full((len(windows), len(labels or self.bundle.labels)), np.nan)
        if held.any():
            probs[held] = restrict(self.window_probs(windows[held]), self.bundle.labels, labels)
            if np.isnan(probs[held]).any():
                raise non_finite_output()
        return probs, held, shares

    def warm_up(self) -> None:
        """One forward pass so the first request does not pay for lazy initialisation."""
        self.predict(np.zeros(self.bundle.windowing.samples, dtype=np.float32))
