"""End-to-end HTTP latency of POST /predict against a running service on 127.0.0.1.

    ser serve &                      # or make serve
    python -m benchmarks.bench_http [--url http://127.0.0.1:8000] [--requests 200] [--concurrency 4]

Bounded in count and time; it targets the loopback address only. Student and teacher
routes are measured in the same run, interleaved, so their ratio is meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlparse

import httpx
import numpy as np

from devtools.data import RAVDESS_CLIP

ROUTES = {"student": "/predict?model=student", "teacher": "/predict/teacher"}


async def run(url: str, n: int, concurrency: int, data: bytes, deadline_s: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in ROUTES}
    sem = asyncio.Semaphore(concurrency)
    stop = time.monotonic() + deadline_s

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def one(i: int) -> None:
            name = list(ROUTES)[i % len(ROUTES)]
            async with sem:
                if time.monotonic() > stop:
                    return
                t0 = time.perf_counter()
                r = await client.post(ROUTES[name], content=data, headers={"content-type": "audio/flac"})
                if r.status_code == 200:
                    times[name].append(time.perf_counter() - t0)
        await asyncio.gather(*[one(i) for i in range(n)])
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=120)
    args = ap.parse_args()
    if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("this benchmark only targets a service on the loopback address")
    data = RAVDESS_CLIP.read_bytes()
    t0 = time.perf_counter()
    times = asyncio.run(run(args.url, args.requests, args.concurrency, data, args.max_seconds))
    wall = time.perf_counter() - t0
    print(f"{sum(map(len, times.values()))} requests in {wall:.1f} s, concurrency {args.concurrency}, "
          f"clip {RAVDESS_CLIP.name} ({len(data)} bytes)")
    print("| route | requests | median ms | p99 ms |\n|---|---|---|---|")
    for name, t in times.items():
        if t:
            ms = np.asarray(t) * 1000
            print(f"| {ROUTES[name]} | {len(t)} | {np.median(ms):.1f} | {np.percentile(ms, 99):.1f} |")


if __name__ == "__main__":
    main()
