"""The one rule of `model=auto`: the student answers, and the teacher where the student is unsure.

Every path that decides it calls `asks_teacher`: `/predict` and batches (service.answer), live
streams, `ser score`, the pipeline's reports and the experiments, so they can never disagree.
"""

from __future__ import annotations

import numpy as np

# The shipped value, stated here only (SER_FALLBACK_THRESHOLD overrides it). 0.2: on TESS OAF,
# never trained on, the shipped teacher is below the student, and any higher threshold took
# `auto` below the student there (docs/experiments.md).
DEFAULT_THRESHOLD = 0.2


def asks_teacher(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(..., C) calibrated student probabilities -> (...) bool: True where the teacher answers,
    that is where the student's top probability is below `threshold`."""
    return np.asarray(probs).max(axis=-1) < threshold


def auto_probs(student: np.ndarray, teacher: np.ndarray, threshold: float) -> np.ndarray:
    """(N, C) student and teacher probabilities -> what `model=auto` answers for each row."""
    return np.where(asks_teacher(student, threshold)[:, None], teacher, student)
