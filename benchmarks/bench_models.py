"""Forward latency of the bundles, side by side in one run (these machines are noisy).

    python -m benchmarks.bench_models [--bundles models/student models/student-int8 models/teacher]
                                      [--seconds 3] [--iterations 200] [--threads 1]

Each iteration runs every bundle once on the same window, in rotating order, so drift in
machine load hits all of them alike; the ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from devtools.data import RAVDESS_CLIP
from service.audio import SAMPLE_RATE, load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from service.shipped import MODELS_DIR


def window(seconds: float) -> np.ndarray:
    """A real speech window when the RAVDESS clip is present, else noise of the same length."""
    n = round(seconds * SAMPLE_RATE)
    x = load_audio(RAVDESS_CLIP)[SAMPLE_RATE // 2:] if RAVDESS_CLIP.exists() else np.random.default_rng(0).standard_normal(n)
    return np.resize(x, n).astype(np.float32)[None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", nargs="+", type=Path,
                    default=[p for p in (MODELS_DIR / n for n in ("student", "student-int8", "teacher")) if p.exists()])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    models = [OnnxModel(load_bundle(b), intra_threads=args.threads) for b in args.bundles]
    x = window(args.seconds)
    for m in models:
        for _ in range(10):
            m.logits(x)   # warm-up
    times = {i: [] for i in range(len(models))}
    for it in range(args.iterations):
        for k in range(len(models)):
            i = (it + k) % len(models)
            t0 = time.perf_counter()
            models[i].logits(x)
            times[i].append(time.perf_counter() - t0)
    base = np.median(times[0])
    rows = []
    for i, m in enumerate(models):
        t = np.asarray(times[i]) * 1000
        rows.append({"bundle": str(args.bundles[i]), "precision": m.bundle.precision, "parameters": m.bundle.parameters,
                     "median_ms": round(float(np.median(t)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
                     "ratio_to_first": round(float(np.median(times[i]) / base), 2)})
    print(f"one {args.seconds:g} s window, {args.threads} thread(s), {args.iterations} iterations each, interleaved")
    print("| bundle | precision | parameters | median ms | p99 ms | × first |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle']} | {r['precision']} | {r['parameters']:,} | {r['median_ms']} | {r['p99_ms']} | {r['ratio_to_first']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
