"""Temperature calibration on the validation speakers, through the serving path.

The service reports softmax(logits / T) averaged over windows; T is chosen to minimise the
negative log-likelihood of that exact quantity, so `confidence` means what it says.
"""

from __future__ import annotations

import numpy as np

from service.audio import load_audio
from service.inference import OnnxModel, softmax
from service.labels import LABELS
from training.metrics import expected_calibration_error
from training.records import Utterance

GRID = np.exp(np.linspace(np.log(0.25), np.log(10.0), 120))


def window_logits(model: OnnxModel, records: list[Utterance]) -> list[np.ndarray]:
    """Per clip, the (W, C) window logits the service computes."""
    return [model.logits(model.windows(load_audio(r.path))[0]) for r in records]


def utterance_probs(logits: list[np.ndarray], temperature: float) -> np.ndarray:
    return np.stack([softmax(lg.astype(np.float64), temperature).mean(axis=0) for lg in logits])


def fit_temperature(logits: list[np.ndarray], records: list[Utterance]) -> dict:
    """Best T on the grid, with NLL and ECE before (T=1) and after."""
    y = np.array([LABELS.index(r.label) for r in records])

    def nll(t: float) -> float:
        p = utterance_probs(logits, t)[np.arange(len(y)), y]
        return float(-np.log(np.clip(p, 1e-12, 1)).mean())

    best = min(GRID, key=nll)
    return {"temperature": float(best), "nll_before": nll(1.0), "nll_after": nll(best),
            "ece_before": expected_calibration_error(utterance_probs(logits, 1.0), y),
            "ece_after": expected_calibration_error(utterance_probs(logits, best), y), "n": len(y)}
