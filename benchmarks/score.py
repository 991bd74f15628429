"""Files per second over one archive: `ser score` on the local engine, on the Ray engine (a
local Ray), and the service's /predict at 8 connections, on the same files and model.

    python benchmarks/score.py [--files 3000] [--rounds 3] [--workers N] [--connections 8]

The files are RAVDESS clips from ../shared/data (48 kHz FLAC, about 3.7 s; past the corpus's
1,200 clips, links to them under other names; generated speech-like FLACs of the same shape
when the corpus is absent); the model is the shipped int8 student for
all three. Each round runs the three candidates one after another, so drift in the machine's
load hits them alike. The local engine's time includes starting its worker processes; the Ray
engine's includes its actors, not `ray.init()` (reported apart); /predict's server is started
and warm beforehand, and its clients send each file's bytes (read beforehand) as a raw body
over keep-alive connections. Every answer's label is checked against the local engine's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from load import service_cmd, start, stop  # noqa: E402  benchmarks/load.py, beside this script
from service.settings import Settings  # noqa: E402
from scoring import inputs, local, ray_engine, sinks  # noqa: E402
from scoring.progress import Progress  # noqa: E402
from scoring.rows import Options, bundle_labels, output_schema  # noqa: E402

RAVDESS = ROOT / ".." / "shared" / "data" / "ravdess"


def archive(n: int, tmp: Path) -> list[str]:
    """`n` distinct paths: the corpus's clips, and links to them under other names past its size."""
    found = sorted(str(p.resolve()) for p in RAVDESS.glob("Actor_*/*.flac"))
    if found:
        (tmp / "more").mkdir()
        for i in range(len(found), n):
            (tmp / "more" / f"{i:06d}.flac").symlink_to(found[i % len(found)])
        return (found + sorted(str(p) for p in (tmp / "more").iterdir()))[:n]
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import voice   # the tests' speech-like signal
    paths = []
    for i in range(n):
        paths.append(str(tmp / f"clip{i:05d}.flac"))
        sf.write(paths[-1], voice(3.7, sr=48_000, seed=i), 48_000)
    return paths


def engine(name: str, files: list[str], options: Options, tmp: Path, workers: int) -> tuple[float, dict]:
    """Seconds to score `files` on one engine, and the label of each path."""
    table = inputs.collect(files).table
    schema = output_schema(bundle_labels(options), False, [])
    out = tmp / f"{name}.parquet"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if name == "local":
        sink = sinks.open_sink(str(out), "parquet", schema, resume=False)
        local.run(table, options, schema, sink, workers=workers, row_group=1000, flush_s=60,
                  progress=Progress(len(table), quiet=True))
    else:
        ray_engine.run(table, options, schema, str(out), workers=workers, files_per_batch=16, rows_per_file=1000)
    seconds = time.perf_counter() - t0
    rows = pq.read_table(out).to_pylist()
    return seconds, {r["path"]: r["label"] for r in rows}


def predict(files: list[str], port: int, connections: int) -> tuple[float, dict]:
    """Seconds for `connections` keep-alive clients to send every file to /predict once."""
    bodies = {f: Path(f).read_bytes() for f in files}
    todo, labels, lock = iter(files), {}, threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                f = next(todo, None)
            if f is None:
                break
            conn.request("POST", "/predict?model=student", body=bodies[f],
                         headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            answer = json.loads(r.read())
            labels[f] = answer["label"] if r.status == 200 else f"HTTP {r.status}"
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="local processes and Ray actors")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--port", type=int, default=8770)
    args = ap.parse_args()

    student = str(ROOT / Settings().student_bundle)
    options = Options(student=student, teacher=None, model="student", fallback_threshold=0.3,
                      max_duration_s=3600, segments=False)
    tmp = Path(tempfile.mkdtemp(prefix="score-bench-"))
    server = start(service_cmd(args.port), args.port, env={"SER_STUDENT_BUNDLE": student})
    try:
        files = archive(args.files, tmp)
        t0 = time.perf_counter()
        ray_engine.start(None, args.workers, quiet=True)
        ray_start = time.perf_counter() - t0
        seconds: dict[str, list[float]] = {"local engine": [], "Ray engine (local Ray)": [],
                                           f"/predict, {args.connections} connections": []}
        disagree = 0
        for r in range(args.rounds):
            s_local, want = engine("local", files, options, tmp, args.workers)
            s_ray, got_ray = engine("ray", files, options, tmp, args.workers)
            s_http, got_http = predict(files, args.port, args.connections)
            for name, s in zip(seconds, (s_local, s_ray, s_http)):
                seconds[name].append(s)
            disagree += sum(got_ray[f] != want[f] for f in want) + sum(got_http[f] != want[f] for f in want)
            print(json.dumps({"round": r, **{k: round(len(want) / v[-1], 1) for k, v in seconds.items()}}), flush=True)
    finally:
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(files)
    base = n / statistics.median(seconds[f"/predict, {args.connections} connections"])
    print(f"\n{n} files, {args.workers} workers, {args.rounds} rounds (median); ray.init() {ray_start:.1f} s, "
          f"not counted; labels that differ from the local engine's: {disagree}\n")
    print("| candidate | files/s | vs /predict |\n|---|---|---|")
    for name, s in seconds.items():
        rate = n / statistics.median(s)
        print(f"| {name} | {rate:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
