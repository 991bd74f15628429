"""The emotion label set: the single place that fixes the model output order.

Bundles carry their own copy of the labels; the service reads them from the bundle.
This constant is what training writes into every bundle it makes.
"""

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "neutral")
