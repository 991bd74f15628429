"""Peak resident memory of the server per request: decompression bombs and the largest valid clips.

    python -m benchmarks.peak_memory [--repo .] [--only bomb] [--teacher models/teacher]

Starts `ser serve` from --repo (another checkout can be measured the same way, e.g. the code
before bounded decoding) on a free 127.0.0.1 port, then sends each case of
devtools/hostile.py alone and reports how far the process's peak RSS (VmHWM, reset
before each request through /proc/PID/clear_refs) rose above its RSS before the request,
and the CPU time the server spent on it. Bounded: one request per case.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devtools.hostile import corpus, run_corpus
from devtools.process import cpu_s, peak_rss_mb, reset_peak, rss_mb
from devtools.server import ser_serve, started

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CASES = ("bomb", "duration_59_9s", "segments_of_59s", "rate_192k", "channels_8", "rate_96k_24bit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose `service` is measured")
    ap.add_argument("--only", nargs="*", default=list(DEFAULT_CASES), help="case names or groups")
    ap.add_argument("--port", type=int, default=18_731)
    ap.add_argument("--teacher", default=str(ROOT / "models" / "teacher"))
    args = ap.parse_args()
    env = {"SER_STUDENT_BUNDLE": str(ROOT / "models" / "student"), "SER_TEACHER_BUNDLE": args.teacher,
           "SER_UPLOAD_TIMEOUT_S": "5", "SER_WORKERS": "1"}   # one process: its RSS is the server's
    cases = [c for c in corpus() if c.name in args.only or c.group in args.only]
    for c in cases:
        c.build()   # build the bombs before the server starts, so their build time is not measured
    repo = args.repo.resolve()
    python = repo / ".venv" / "bin" / "python"
    cmd = ser_serve(args.port, python=str(python if python.exists() else sys.executable))
    with started(cmd, args.port, env=env, cwd=repo, timeout_s=120) as proc:
        print(f"server {args.repo}: RSS after start-up {rss_mb(proc.pid):.0f} MB\n")
        print("| case | upload bytes | status | code | peak RSS above the RSS before (MB) | server CPU s |\n|---|---|---|---|---|---|")
        for c in cases:
            before = rss_mb(proc.pid)
            reset_peak(proc.pid)
            cpu0 = cpu_s(proc.pid)
            [r] = run_corpus(f"http://127.0.0.1:{args.port}", [c], timeout_s=120)
            print(f"| {c.name} | {len(c.build().body)} | {r.status} | {r.code or ''} | "
                  f"{peak_rss_mb(proc.pid) - before:.1f} | {cpu_s(proc.pid) - cpu0:.2f} |")
        print(f"\nRSS at the end {rss_mb(proc.pid):.0f} MB")


if __name__ == "__main__":
    main()
