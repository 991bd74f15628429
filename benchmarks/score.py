"""Files per second over one archive: `ser score` on the local engine, on the Ray engine (a
local Ray), and the service's /predict at 8 connections, on the same files and model.

    python -m benchmarks.score [--files 3000] [--rounds 3] [--workers N] [--connections 8]

The files are RAVDESS clips from ../shared/data (48 kHz FLAC, about 3.7 s; past the corpus's
1,200 clips, links to them under other names; generated speech-like FLACs of the same shape
when the corpus is absent); the model is the served student (`--student`) for all three. Each round
runs the three candidates one after another, so drift in the machine's load hits them alike.
The local engine runs as users run it (`ser score` on a manifest of the files: its time
includes Python's start-up and the workers'); the Ray engine runs in a process of its own,
timed from after `ray.init()` (reported apart), its actors' start-up included. /predict's
server (`ser serve --workers`, as many processes as the engines get) is started and warm
beforehand; its clients send each file's bytes (read beforehand) as
a raw body over keep-alive connections. Every answer's label is checked against the local
engine's.

Besides files/s (wall clock), the CPU time that each file costs is measured for the local
engine (the command and its workers) and /predict (server and clients): on a machine that other jobs
load, wall-clock rates follow the share of the CPU each candidate gets, CPU time much less.
Windows/s counts the archive's windows as the bundle cuts them (trimmed, 3 s, hop 1 s); the
model-bound limit is the bundle's own forward pass alone, one window per call on one thread per
worker (the best of 5 passes of 200 windows, timed in this process before the rounds), so its share
is the part of the model's speed that a candidate turns into scored files.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf

from benchmarks.load import serving
from devtools.audio import voice
from devtools.data import RAVDESS_DIR
from devtools.process import cpu_s, finished_children_cpu_s
from devtools.server import ser_serve
from service.audio import load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def archive(n: int, tmp: Path) -> list[str]:
    """`n` distinct paths: the corpus's clips, and links to them under other names past its size."""
    found = sorted(str(p.resolve()) for p in RAVDESS_DIR.glob("Actor_*/*.flac"))
    (tmp / "more").mkdir()
    if found:
        for i in range(len(found), n):
            (tmp / "more" / f"{i:06d}.flac").symlink_to(found[i % len(found)])
        return (found + sorted(str(p) for p in (tmp / "more").iterdir()))[:n]
    for i in range(n):
        sf.write(tmp / "more" / f"{i:06d}.flac", voice(3.7, sr=48_000, seed=i), 48_000)
    return sorted(str(p) for p in (tmp / "more").iterdir())


def window_count(files: list[str], student: str) -> int:
    """The windows the bundle cuts from the archive's files (each distinct clip decoded once)."""
    windowing = load_bundle(Path(student)).windowing
    per_clip: dict[str, int] = {}
    for f in files:
        real = str(Path(f).resolve())
        if real not in per_clip:
            per_clip[real] = len(windowing.windows(load_audio(Path(real).read_bytes()))[0])
    return sum(per_clip[str(Path(f).resolve())] for f in files)


def model_windows_per_s(student: str, workers: int, n: int = 200, passes: int = 5) -> float:
    """The model-bound limit: `workers` times one thread's windows/s through the bundle's forward pass."""
    model = OnnxModel(load_bundle(Path(student)), intra_threads=1)
    x = voice(3.0, seed=0)[None, :model.bundle.windowing.samples].astype("float32")
    best = float("inf")
    for _ in range(passes):
        t0 = time.process_time()
        for _ in range(n):
            model.logits(x)
        best = min(best, time.process_time() - t0)
    return workers * n / best


def run_ray(manifest: str, out: str, student: str, workers: int) -> dict:
    """In a process of its own: the Ray engine's seconds, apart from the seconds of ray.init()."""
    from scoring import inputs, ray_engine
    from scoring.rows import Options, bundle_labels, output_schema

    options = Options(student=student, teacher=None, model="student", fallback_threshold=0.3,
                      max_duration_s=3600, segments=False)
    table = inputs.collect([manifest]).table
    schema = output_schema(bundle_labels(options), False, [])
    t0 = time.perf_counter()
    ray_engine.start(None, workers, quiet=True)
    t1 = time.perf_counter()
    ray_engine.run(table, options, schema, out, workers=workers, files_per_batch=16, rows_per_file=1000)
    return {"start_s": t1 - t0, "seconds": time.perf_counter() - t1}


def engine(name: str, manifest: Path, tmp: Path, student: str, workers: int) -> tuple[dict, dict]:
    """The local engine as users run it (`ser score`, start-up included: wall and CPU seconds of the
    command and its workers); the Ray engine in a child that times its pipeline without ray.init()."""
    out = tmp / f"{name}.parquet"
    shutil.rmtree(out, ignore_errors=True)
    if name == "local":
        cmd = [sys.executable, "-m", "service.cli", "score", str(manifest), "--out", str(out), "--student", student,
               "--workers", str(workers), "--quiet"]
    else:
        cmd = [sys.executable, "-m", "benchmarks.score", "--ray-only", "--manifest", str(manifest), "--out", str(out),
               "--student", student, "--workers", str(workers)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cpu0, t0 = finished_children_cpu_s(), time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT)
    result = {"seconds": time.perf_counter() - t0, "cpu_s": finished_children_cpu_s() - cpu0}
    if name == "ray":   # its CPU time is Ray's processes', not the child's: not counted
        result = json.loads(done.stdout.strip().splitlines()[-1])
    labels = {r["path"]: r["label"] for r in pq.read_table(out, columns=["path", "label"]).to_pylist()}
    return result, labels


def predict(files: list[str], port: int, connections: int, server_pid: int) -> tuple[dict, dict]:
    """`connections` keep-alive clients send every file to /predict once: seconds, CPU seconds
    (server and clients), and the label of each file."""
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
    cpu0, t0 = cpu_s(server_pid) + cpu_s(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_s": cpu_s(server_pid) + cpu_s() - cpu0}, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="local processes, Ray actors and the server's processes")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--port", type=int, default=8770)
    ap.add_argument("--ray-only", action="store_true", help=argparse.SUPPRESS)   # the Ray engine, in a child
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--student", default=str(Settings().student_bundle), help="bundle for all three")
    args = ap.parse_args()
    if args.ray_only:
        print(json.dumps(run_ray(args.manifest, args.out, args.student, args.workers)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="score-bench-"))
    http_name = f"/predict, {args.connections} connections, `ser serve --workers {args.workers}`"
    runs: dict[str, list[dict]] = {"local engine": [], "Ray engine (local Ray)": [], http_name: []}
    ray_start, disagree = [], 0
    try:
        with serving(ser_serve(args.port, args.workers), args.port, {"SER_STUDENT_BUNDLE": args.student}) as server:
            files = archive(args.files, tmp)
            windows, limit = window_count(files, args.student), model_windows_per_s(args.student, args.workers)
            manifest = tmp / "files.csv"
            manifest.write_text("path\n" + "".join(f"{f}\n" for f in files))
            for r in range(args.rounds):
                loc, want = engine("local", manifest, tmp, args.student, args.workers)
                ray, got_ray = engine("ray", manifest, tmp, args.student, args.workers)
                ray_start.append(ray.pop("start_s"))
                web, got_web = predict(files, args.port, args.connections, server.pid)
                for name, result in zip(runs, (loc, ray, web)):
                    runs[name].append(result)
                disagree += sum(got_ray[f] != want[f] for f in want) + sum(got_web[f] != want[f] for f in want)
                print(json.dumps({"round": r, **{k: round(len(files) / v[-1]["seconds"], 1) for k, v in runs.items()}}),
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(runs, len(files), args, statistics.median(ray_start), disagree, http_name, windows, limit)


def report(runs: dict, n: int, args, ray_start: float, disagree: int, http_name: str, windows: int,
           limit: float) -> None:
    rate = {k: n / statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    cpu_ms = {k: 1000 * statistics.median(r["cpu_s"] for r in v) / n for k, v in runs.items() if "cpu_s" in v[0]}
    print(f"\n{n} files, {args.workers} workers, {args.rounds} rounds (medians); ray.init() {ray_start:.1f} s, "
          f"not counted; labels that differ from the local engine's: {disagree}; load average now "
          f"{os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores; {windows} windows; "
          f"model-bound limit {limit:.0f} windows/s ({args.workers} threads)\n")
    print("| candidate | files/s | windows/s | share of the model-bound limit | vs /predict | CPU ms per file "
          "| vs /predict |\n|---|---|---|---|---|---|---|")
    for name in runs:
        cpu = (f"{cpu_ms[name]:.2f} | {cpu_ms[http_name] / cpu_ms[name]:.2f}x fewer" if name in cpu_ms else "– | –")
        per_s = rate[name] * windows / n
        print(f"| {name} | {rate[name]:.1f} | {per_s:.0f} | {per_s / limit:.0%} | {rate[name] / rate[http_name]:.2f}x "
              f"| {cpu} |")


if __name__ == "__main__":
    main()
