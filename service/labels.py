"""The emotion label set: the single place that fixes the model output order.

Bundles carry their own copy of the labels; the service reads them from the bundle.
This constant is what training writes into every bundle it makes.
"""

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "neutral")


def label_index(label: str) -> int:
    """Index of `label` in LABELS; a ValueError names the accepted labels."""
    try:
        return LABELS.index(label)
    except ValueError:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}") from None
