"""The one rule of `model=auto`: the student answers, and the teacher where the student is unsure.

Every path that decides it calls `asks_teacher`: `/predict` and batches (service.answer), live
streams, `ser score`, the pipeline's reports and the experiments, so they can never disagree.

"Unsure" is read on the student's logit margin, the gap between its two largest logits, not on
its calibrated top probability: calibration divides the logits by a temperature fitted on a few
validation speakers (1.9 to 5.4 for students of one recipe), which moves every probability
threshold, while the margin of models trained by the same recipe stays on one scale. So a
threshold chosen on students that never heard the test speakers (speaker folds) holds for the
shipped student: docs/experiments.md, "A fallback signal that carries over".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from service.bundle import Bundle

# For a student bundle that names no threshold of its own (SER_FALLBACK_THRESHOLD overrides
# both: `threshold_for`); the shipped student names this one. 1.6: the largest
# mean UA over held-out corpora (speaker folds of RAVDESS and nEMO, TESS OAF) with the teacher
# answering at most 40 % of clips and no set more than 0.02 below the student alone, for fold
# students of the shipped recipe and schedule; on the shipped pair's own held-out audio it sends
# 31 % of clips to the teacher and keeps every set within 0.02 of the student.
DEFAULT_THRESHOLD = 1.6


def logit_margin(probs: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """(..., C) calibrated probabilities, softmax(logits / temperature) -> (...) the gap between
    the two largest logits, temperature times the log-ratio of the two largest probabilities (for
    a clip, of its mean window probabilities). It is the same over any subset of the labels that
    keeps the top two, since renormalising does not change a ratio. `temperature` may be one
    value per row."""
    top2 = np.log(np.clip(np.sort(np.asarray(probs, dtype=float), axis=-1)[..., -2:], 1e-12, None))
    return np.asarray(temperature) * (top2[..., 1] - top2[..., 0])


def asks_teacher(probs: np.ndarray, threshold: float, temperature: float | np.ndarray) -> np.ndarray:
    """(..., C) calibrated student probabilities -> (...) bool: True where the teacher answers,
    that is where the student's logit margin is below `threshold` (0: never)."""
    return logit_margin(probs, temperature) < threshold


def auto_probs(student: np.ndarray, teacher: np.ndarray, threshold: float,
               temperature: float | np.ndarray) -> np.ndarray:
    """(N, C) student and teacher probabilities -> what `model=auto` answers for each row."""
    return np.where(asks_teacher(student, threshold, temperature)[:, None], teacher, student)


def threshold_for(student: Bundle, override: float | None = None) -> float:
    """The threshold `auto` uses with this student: `override` (SER_FALLBACK_THRESHOLD) when set,
    else the one chosen for the student's recipe (its bundle's `fallback_threshold`), else the default."""
    if override is not None:
        return override
    return DEFAULT_THRESHOLD if student.fallback_threshold is None else student.fallback_threshold
