"""Peak resident memory of the server per request: decompression bombs and the largest valid clips.

    python -m benchmarks.peak_memory [--repo .] [--only bomb] [--teacher models/teacher]

Starts `ser serve` from --repo (another checkout can be measured the same way, e.g. the code
before bounded decoding) on a free 127.0.0.1 port, then sends each case of
tests/support/hostile.py alone and reports how far the process's peak RSS (VmHWM, reset
before each request through /proc/PID/clear_refs) rose above its RSS before the request,
and the CPU time the server spent on it. Bounded: one request per case.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tests.support.hostile import corpus, run_corpus
from tests.support.server import reset_peak, rss_kb, wait_ready

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CASES = ("bomb", "duration_59_9s", "segments_of_59s", "rate_192k", "channels_8", "rate_96k_24bit")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(repo: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    python = repo / ".venv" / "bin" / "python"
    proc = subprocess.Popen([str(python if python.exists() else sys.executable), "-m", "service.cli", "serve",
                             "--port", str(port)], cwd=repo, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout_s=120)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose `service` is measured")
    ap.add_argument("--only", nargs="*", default=list(DEFAULT_CASES), help="case names or groups")
    ap.add_argument("--port", type=int, default=18_731)
    ap.add_argument("--teacher", default=str(ROOT / "models" / "teacher"))
    args = ap.parse_args()
    env = {"SER_STUDENT_BUNDLE": str(ROOT / "models" / "student"), "SER_TEACHER_BUNDLE": args.teacher,
           "SER_UPLOAD_TIMEOUT_S": "5"}
    cases = [c for c in corpus() if c.name in args.only or c.group in args.only]
    for c in cases:
        c.build()   # build the bombs before the server starts, so their build time is not measured
    proc = start_server(args.repo.resolve(), args.port, env)
    try:
        start = rss_kb(proc.pid)["VmRSS"]
        print(f"server {args.repo}: RSS after start-up {start / 1024:.0f} MB\n")
        print("| case | upload bytes | status | code | peak RSS above the RSS before (MB) | server CPU s |\n|---|---|---|---|---|---|")
        for c in cases:
            before = rss_kb(proc.pid)["VmRSS"]
            reset_peak(proc.pid)
            cpu0 = cpu_s(proc.pid)
            [r] = run_corpus(f"http://127.0.0.1:{args.port}", [c], timeout_s=120)
            peak = rss_kb(proc.pid)["VmHWM"]
            print(f"| {c.name} | {len(c.build().body)} | {r.status} | {r.code or ''} | "
                  f"{(peak - before) / 1024:.1f} | {cpu_s(proc.pid) - cpu0:.2f} |")
        print(f"\nRSS at the end {rss_kb(proc.pid)['VmRSS'] / 1024:.0f} MB")
    finally:
        proc.kill()
        proc.wait(10)


if __name__ == "__main__":
    main()
