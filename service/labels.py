"""The emotion label set: the single place that fixes the model output order, and the rule for
a caller's own subset of it.

Bundles carry their own copy of the labels; the service reads them from the bundle.
This constant is what training writes into every bundle it makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "neutral")
MIN_SUBSET = 2   # one label would be an answer without a question


class LabelSetError(ValueError):
    """A `labels` parameter that names no usable subset; the message names the valid labels."""


def parse_label_set(text: str | None, labels: Sequence[str]) -> tuple[str, ...] | None:
    """`"angry,happy,neutral,sad"` -> those labels in the model's order; None (all labels) for
    None or "". Raises LabelSetError for an unknown label, a repeated one, or fewer than two."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise LabelSetError(f"unknown label{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                            f"valid labels: {', '.join(labels)}")
    if len(set(names)) != len(names):
        raise LabelSetError(f"a label is named twice in {text!r}; name each of {', '.join(labels)} at most once")
    if len(names) < MIN_SUBSET:
        raise LabelSetError(f"name at least {MIN_SUBSET} labels, comma-separated; valid labels: {', '.join(labels)}")
    return tuple(n for n in labels if n in names)


def restrict(probs: np.ndarray, labels: Sequence[str], subset: Sequence[str] | None) -> np.ndarray:
    """(..., C) probabilities over `labels` -> (..., K) over `subset`, renormalised to sum to 1:
    the model's belief given that the answer is one of `subset`. Every path that takes a caller's
    label set (REST, stream, scoring, the Open Inference Protocol) goes through here, before the
    argmax and before the fallback rule looks at the confidence."""
    if subset is None:
        return probs
    kept = probs[..., [labels.index(n) for n in subset]]
    total = kept.sum(axis=-1, keepdims=True)
    # All the mass underflowed onto excluded labels: the model says nothing about these, so uniform.
    return np.where(total > 0, kept / np.where(total > 0, total, 1), 1 / len(subset))
