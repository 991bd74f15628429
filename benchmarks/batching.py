"""Dynamic batching experiment: do concurrent requests' windows go faster as one batch?

    python benchmarks/batching.py [--seconds 5] [--wait-ms 2] [--max-batch 8] [--threads 1]

In-process, on the shipped bundles, one 3 s window per request (the benchmark clip), with the
service's parallelism (two inferences at once, one intra-op thread each). "direct" is what the
service does: each request runs its own window. "batched" is Triton-style: two workers each
take the first waiting request, wait at most --wait-ms for more (up to --max-batch), run them
as one batch and hand the results back. Measured at 1 and 8 concurrent callers, interleaved.
HTTP is left out on purpose: it only adds the same per-request cost to both, so a gain that
does not show here cannot show end to end.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_models import window
from service.bundle import load_bundle
from service.inference import OnnxModel

SLOTS = 2   # SER_MAX_CONCURRENCY's default


class Batcher:
    def __init__(self, model: OnnxModel, wait_s: float, max_batch: int):
        self.model, self.wait_s, self.max_batch = model, wait_s, max_batch
        self.q: queue.Queue = queue.Queue()
        self.running = True
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(SLOTS)]
        for w in self.workers:
            w.start()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        done, box = threading.Event(), {}
        self.q.put((x, done, box))
        done.wait()
        return box["y"]

    def _work(self) -> None:
        while self.running:
            try:
                items = [self.q.get(timeout=0.1)]
            except queue.Empty:
                continue
            deadline = time.perf_counter() + self.wait_s
            while len(items) < self.max_batch:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    items.append(self.q.get(timeout=left))
                except queue.Empty:
                    break
            y = self.model.logits(np.concatenate([x for x, _, _ in items]))
            for i, (_, done, box) in enumerate(items):
                box["y"] = y[i:i + 1]
                done.set()


def direct(model: OnnxModel):
    slots = threading.Semaphore(SLOTS)

    def run(x: np.ndarray) -> np.ndarray:
        with slots:
            return model.logits(x)
    return run


def measure(fn, x: np.ndarray, callers: int, seconds: float) -> dict:
    lat, lock, stop = [], threading.Lock(), time.perf_counter() + seconds

    def caller() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            fn(x)
            with lock:
                lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.asarray(lat) * 1000
    return {"per_s": round(len(lat) / seconds, 1), "p50_ms": round(float(np.median(ms)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", nargs="+", type=Path, default=[Path("models/student-int8"), Path("models/teacher")])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--wait-ms", type=float, default=2)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print("| bundle | callers | direct /s | batched /s | × | direct p50 / p99 ms | batched p50 / p99 ms |\n"
          "|---|---|---|---|---|---|---|")
    for b in args.bundles:
        if not b.exists():
            continue
        model = OnnxModel(load_bundle(b), intra_threads=args.threads)
        x = window(model.bundle.window_s)
        batcher = Batcher(model, args.wait_ms / 1000, args.max_batch)
        for fn in (direct(model), batcher):
            measure(fn, x, 2, 0.5)   # warm-up, also of the batch shapes
        for callers in (1, 8):
            d, bt = measure(direct(model), x, callers, args.seconds), measure(batcher, x, callers, args.seconds)
            print(f"| {b} | {callers} | {d['per_s']} | {bt['per_s']} | {bt['per_s'] / d['per_s']:.2f} | "
                  f"{d['p50_ms']} / {d['p99_ms']} | {bt['p50_ms']} / {bt['p99_ms']} |", flush=True)
        batcher.running = False


if __name__ == "__main__":
    main()
