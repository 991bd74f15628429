"""onnxruntime inference of a bundle: 16 kHz audio -> windows -> logits -> one result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.audio import SAMPLE_RATE, AudioError, batches_for, windows_for
from service.bundle import Bundle, BundleError

MAX_BATCH = 32   # windows built and run at once at most; `OnnxModel.max_batch` may be less (service/memory.py)
PROBABILITY_DIGITS = 4   # what answers carry: float32 logits hold no more than that of meaning


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    window_probs: np.ndarray     # (W, C), calibrated per-window probabilities
    window_starts: np.ndarray    # (W,) seconds from the start of the clip
    window_s: float


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
        b = self.bundle
        return windows_for(audio, b.window_s, b.hop_s, b.trim_silence, b.pad)

    def window_probs(self, windows: np.ndarray) -> np.ndarray:
        """(W, S) input windows -> (W, C) calibrated probabilities; a row is NaN where the
        model's output is not finite (finite audio of extreme magnitude can overflow inside the graph)."""
        logits = self.logits(windows).astype(np.float64)
        bad = ~np.isfinite(logits).all(axis=1)
        probs = softmax(np.where(bad[:, None], 0.0, logits), self.bundle.temperature)
        probs[bad] = np.nan
        return probs

    def predict(self, audio: np.ndarray) -> Prediction:
        """(N,) 16 kHz float32 audio -> utterance prediction (mean of window probabilities)."""
        b = self.bundle
        parts = [(self.window_probs(w), s)
                 for w, s in batches_for(audio, b.window_s, b.hop_s, b.trim_silence, b.pad, batch=self.max_batch)]
        probs = np.concatenate([p for p, _ in parts])
        starts = np.concatenate([s for _, s in parts])
        if np.isnan(probs).any():
            raise non_finite_output()
        mean = probs.mean(axis=0)
        best = int(mean.argmax())
        return Prediction(
            label=b.labels[best],
            confidence=float(mean[best]),
            probabilities={name: float(p) for name, p in zip(b.labels, mean)},
            window_probs=probs,
            window_starts=starts,
            window_s=b.window_s,
        )

    def warm_up(self) -> None:
        """One forward pass so the first request does not pay for lazy initialisation."""
        self.predict(np.zeros(round(self.bundle.window_s * SAMPLE_RATE), dtype=np.float32))
