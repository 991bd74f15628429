"""The one rule of `model=auto`: the student answers, and the teacher where the student is unsure.

Every path that decides it calls `asks_teacher`: `/predict` and batches (service.answer), live
streams, `ser score`, the pipeline's reports and the experiments, so they can never disagree.
"""

from __future__ import annotations

import numpy as np

# The shipped value, stated here only (SER_FALLBACK_THRESHOLD overrides it). 0.28: the largest
# held-out mean UA of the shipped pair with the teacher answering at most 40 % of clips and no
# held-out set more than 0.02 below the student (TESS OAF, where the teacher is below the
# student, sets the limit): docs/experiments.md, "Students trained on short windows".
DEFAULT_THRESHOLD = 0.28


def asks_teacher(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(..., C) calibrated student probabilities -> (...) bool: True where the teacher answers,
    that is where the student's top probability is below `threshold`."""
    return np.asarray(probs).max(axis=-1) < threshold


def auto_probs(student: np.ndarray, teacher: np.ndarray, threshold: float) -> np.ndarray:
    """(N, C) student and teacher probabilities -> what `model=auto` answers for each row."""
    return np.where(asks_teacher(student, threshold)[:, None], teacher, student)
