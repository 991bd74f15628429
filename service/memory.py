"""Model runs sized from a memory budget (SER_MODEL_MEMORY_MB), so that no load takes the
process past its container's limit.

onnxruntime keeps the memory of a session's largest runs (its arena grows and never shrinks),
and a run's memory grows with its batch: the shipped teacher takes about 28 MB per 6 s window,
so its former batch of 32 windows took 0.9 GB. A model runs at most `SER_MAX_CONCURRENCY` + 1
times at once (the REST slots, and the batcher of the live streams), so each model's batch is
the most windows for which that many runs fit its budget. What one window costs is measured
once, when the model loads: the growth of the resident set over a run of PROBE windows after
the warm-up's run of one.
"""

from __future__ import annotations

import logging

import numpy as np
import psutil

from service.inference import MAX_BATCH, OnnxModel

log = logging.getLogger("ser")
PROBE = 4


def window_bytes(model: OnnxModel) -> int:
    """The memory one window adds to a run of `model`. Measure once, right after `warm_up`: the
    arena keeps what it grew to, so a second measure would see less."""
    rss = psutil.Process().memory_info
    windows = np.zeros((PROBE, model.bundle.windowing.samples), np.float32)
    before = rss().rss
    model.logits(windows)
    return max(0, rss().rss - before) // (PROBE - 1)


def batch_for(per_window: int, budget_mb: int, runs: int) -> int:
    """The most windows per run (1 to MAX_BATCH) for which `runs` runs at once fit in `budget_mb`."""
    return max(1, min(MAX_BATCH, budget_mb * 2**20 // max(1, runs * per_window)))


def size_batch(model: OnnxModel, budget_mb: int, runs: int) -> None:
    """Sets `model.max_batch` from its measured cost per window (after `warm_up`)."""
    per_window = window_bytes(model)
    model.max_batch = batch_for(per_window, budget_mb, runs)
    log.info("%s: %.1f MB per window, batch %d, %d runs at most (SER_MODEL_MEMORY_MB=%d)",
             model.bundle.role, per_window / 2**20, model.max_batch, runs, budget_mb)
