"""Classification metrics: accuracy, UA (mean per-class recall), macro-F1, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """(n, n) counts; rows = true class, columns = predicted class."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


NO_ANSWER = -1   # a predicted class for a clip answered "no speech": wrong whatever its true class


def classification_report(y_true, y_pred, labels: list[str] | tuple[str, ...]) -> dict:
    """Metrics of `y_pred` against `y_true` (class indices); a NO_ANSWER prediction counts as
    an error of its true class and is left out of the confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    answered = y_pred != NO_ANSWER
    cm = confusion(y_true[answered], y_pred[answered], len(labels))
    support, predicted = np.bincount(y_true, minlength=len(labels)), cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = support > 0   # classes absent from the split do not drag UA or F1 down
    return {
        "n": len(y_true),
        "no_speech": int((~answered).sum()),
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": {lab: float(r) for lab, r in zip(labels, recall)},
        "confusion": cm.tolist(),
        "labels": list(labels),
    }


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-class confidence over equal-width bins; clips without an answer (NaN rows) left out."""
    answered = ~np.isnan(probs).any(axis=1)
    probs, y_true = probs[answered], np.asarray(y_true)[answered]
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)
