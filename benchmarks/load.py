"""Load, saturation, soak and scaling of the service, side by side with a naive baseline.

    python -m benchmarks.load compare  [--seconds 4] [--rounds 3] [--concurrency 1 2 4 8 16] [--workers 1 2] [--checkout DIR ...]
    python -m benchmarks.load saturate [--seconds 60] [--connections 64] [--retry-after]
    python -m benchmarks.load soak     [--minutes 10] [--share 0.7]
    python -m benchmarks.load grid     [--workers 1 2] [--threads 1 2] [--connections 8]

Every mode starts its own servers on 127.0.0.1 (`ser serve`, with --workers N processes for the
grid and compare's --workers; the naive PyTorch baseline of benchmarks/naive_server.py for
`compare`), sends a 3 s WAV of real speech as a multipart upload over keep-alive connections from a lean
raw-socket client, and stops them afterwards. `compare` interleaves the targets at each
concurrency, so drift in machine load hits them alike, and reports each server's CPU ms per
request beside its requests/s; --checkout adds `ser serve` of other checkouts (the code before
a change) as further targets. Bounded: every point runs --seconds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from devtools.data import RAVDESS_CLIP
from devtools.http import form, part, request_bytes
from devtools.process import cpu_s, rss_mb
from devtools.server import ser_serve, started
from service.audio import SAMPLE_RATE, load_audio
from service.workers import usable_cpus

ROOT = Path(__file__).resolve().parents[1]


def three_second_wav() -> bytes:
    """3 s of real speech (generated speech-like audio without the corpus) as 16 kHz PCM WAV."""
    if RAVDESS_CLIP.exists():
        x = load_audio(RAVDESS_CLIP)[SAMPLE_RATE // 2:SAMPLE_RATE // 2 + 3 * SAMPLE_RATE]
    else:
        t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
        x = (0.2 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(8 * np.pi * t))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def multipart_request(path: str, port: int, wav: bytes) -> bytes:
    """A keep-alive POST of `wav` as the multipart field `file`, as it goes on the wire."""
    return request_bytes(form(part("file", wav), path=path), "127.0.0.1", port, keep_alive=True)


def serving(cmd: list[str], port: int, env: dict[str, str] | None = None):
    """A server of this checkout (the shipped models unless `env` names others), stopped as in production."""
    return started(cmd, port, env=env, cwd=ROOT, timeout_s=180, drain_s=30)


# ---------- the client ----------

@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)   # seconds, accepted (200) requests
    codes: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0
    server_cpu_s: float | None = None   # CPU the server process used meanwhile, when it was measured
    client_cpu_s: float | None = None   # and this process, the client

    def row(self) -> dict:
        ms = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        answers = max(1, sum(self.codes.values()))
        cpu = {} if self.server_cpu_s is None else {"cpu_ms_per_request": round(self.server_cpu_s * 1000 / answers, 3),
                                                    "client_cpu_ms_per_request": round(self.client_cpu_s * 1000 / answers, 3)}
        return {"ok_per_s": round(len(self.latencies) / self.seconds, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1), **cpu, "codes": dict(self.codes)}


def read_response(s: socket.socket, buf: bytearray) -> tuple[int, bool]:
    """Read one HTTP response from a keep-alive socket; returns (status, server closes)."""
    while b"\r\n\r\n" not in buf:
        block = s.recv(65_536)
        if not block:
            raise ConnectionError("closed")
        buf += block
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    need = int(headers.get("content-length", 0))
    while len(rest) < need:
        block = s.recv(65_536)
        if not block:
            raise ConnectionError("closed")
        rest += block
    buf[:] = rest[need:]
    return int(lines[0].split()[1]), headers.get("connection", "").lower() == "close"


def load(port: int, request: bytes, connections: int, seconds: float, rate: float | None = None,
         retry_after: bool = False) -> Run:
    """`connections` keep-alive clients, each sending `request` back to back (closed loop), or
    together at `rate` requests/s (open loop; latency counted from each request's scheduled time).
    With `retry_after`, a client waits the 1 s of Retry-After after a 503, as a polite one does."""
    run, lock = Run(), threading.Lock()
    t_start = time.monotonic() + 0.05
    stop_at = t_start + seconds

    def client(i: int) -> None:
        s, buf, next_t = None, bytearray(), t_start + (i / rate if rate else 0)
        while True:
            if rate:
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            t0 = next_t if rate else time.monotonic()
            if time.monotonic() >= stop_at:
                break
            try:
                if s is None:
                    s, buf = socket.create_connection(("127.0.0.1", port), timeout=60), bytearray()
                s.sendall(request)
                status, close = read_response(s, buf)
            except OSError:
                status, close = 0, True
            dt = time.monotonic() - t0
            with lock:
                run.codes[status] += 1
                if status == 200:
                    run.latencies.append(dt)
            if close and s is not None:
                s.close()
                s = None
            if retry_after and status == 503:
                time.sleep(1.0)
            if rate:
                next_t += connections / rate

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = seconds
    return run


# ---------- modes ----------

TARGETS = {"student": "/predict?model=student", "teacher": "/predict/teacher", "auto": "/predict"}


def measured(pid: int, port: int, request: bytes, connections: int, seconds: float) -> Run:
    """`load`, with the CPU time the server process `pid` spent meanwhile: CPU ms per request is
    steadier than requests/s on a machine that other jobs share."""
    c0, client0 = cpu_s(pid), cpu_s()
    run = load(port, request, connections, seconds)
    run.server_cpu_s, run.client_cpu_s = cpu_s(pid) - c0, cpu_s() - client0
    return run


def compare(args) -> dict:
    wav = three_second_wav()
    # (name, command, port, working directory): this checkout with each --workers, the naive
    # baseline, then each --checkout
    ports = iter(range(args.port, args.port + 100))
    servers = [(f" ({w} workers)" if w > 1 else "", ser_serve(p := next(ports), w), p, ROOT) for w in args.workers]
    servers += [("baseline", [sys.executable, "-m", "benchmarks.naive_server", "--port", str(p := next(ports))], p, ROOT)]
    servers += [(f" ({d})", ser_serve(p := next(ports)), p, d) for d in args.checkout]
    table = {}
    with contextlib.ExitStack() as stack:
        targets = {}
        for suffix, cmd, port, cwd in servers:
            proc = stack.enter_context(started(cmd, port, env={"PYTHONPATH": str(cwd)}, cwd=cwd, timeout_s=180,
                                               drain_s=30))
            if suffix == "baseline":
                targets["baseline (torch, naive)"] = (proc.pid, port, "/predict")
            else:
                targets.update({name + suffix: (proc.pid, port, TARGETS[name]) for name in args.targets})
        for _, port, path in targets.values():   # warm-up
            load(port, multipart_request(path, port, wav), 1, 1.0)
        for c in args.concurrency:
            rounds = collections.defaultdict(list)
            for _ in range(args.rounds):   # rounds interleave the targets again: the median resists load bursts
                for name, (pid, port, path) in targets.items():
                    rounds[name].append(measured(pid, port, multipart_request(path, port, wav), c, args.seconds).row())
            for name, rows in rounds.items():
                table[f"{name} @ {c}"] = {"target": name, "connections": c, **median_row(rows)}
                print(json.dumps(table[f"{name} @ {c}"]), flush=True)
    print("\n| target | connections | requests/s (median round) | p50 ms | p95 ms | p99 ms | server CPU ms per request "
          "(median) | client CPU ms per request | requests/s per round |\n|---|---|---|---|---|---|---|---|---|")
    for r in table.values():
        print(f"| {r['target']} | {r['connections']} | {r['ok_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} | {r['median_cpu_ms_per_request']} | {r['median_client_cpu_ms_per_request']} | "
              f"{' / '.join(map(str, r['rounds_ok_per_s']))} |")
    return table


def median_row(rows: list[dict]) -> dict:
    """The round with the median throughput (its own latencies with it), every round's
    throughput, and the median of the rounds' CPU ms per request."""
    mid = sorted(rows, key=lambda r: r["ok_per_s"])[len(rows) // 2]
    return {**mid, "rounds_ok_per_s": [r["ok_per_s"] for r in rows],
            **{f"median_{k}": float(np.median([r[k] for r in rows])) for k in ("cpu_ms_per_request",
                                                                                "client_cpu_ms_per_request")}}


def saturate(args) -> dict:
    port, wav = args.port, three_second_wav()
    with serving(ser_serve(port, 1), port) as proc:
        req = multipart_request(TARGETS["student"], port, wav)
        load(port, req, 1, 1.0)
        r = load(port, req, args.connections, args.seconds, retry_after=args.retry_after)
        row = {"connections": args.connections, "seconds": args.seconds, "retry_after": args.retry_after, **r.row(),
               "rss_mb": round(rss_mb(proc.pid))}
    print(json.dumps(row))
    return row


def soak(args) -> dict:
    port, wav = args.port, three_second_wav()
    minutes = []
    with serving(ser_serve(port, 1), port) as proc:
        req = multipart_request(TARGETS["student"], port, wav)
        load(port, req, 1, 2.0)
        rate = args.rate or args.share * load(port, req, args.connections, 15).row()["ok_per_s"]
        rss0 = rss_mb(proc.pid)
        print(f"soak at {rate:.0f} requests/s for {args.minutes} min; RSS at start {rss0:.0f} MB", flush=True)
        for m in range(int(args.minutes)):
            r = load(port, req, args.connections, 60, rate=rate)
            minutes.append({"minute": m + 1, **r.row(), "rss_mb": round(rss_mb(proc.pid), 1)})
            print(json.dumps(minutes[-1]), flush=True)
    growth = (minutes[-1]["rss_mb"] - minutes[0]["rss_mb"]) / minutes[0]["rss_mb"] * 100
    summary = {"rate": round(rate, 1), "rss_start_mb": round(rss0, 1), "rss_first_minute_mb": minutes[0]["rss_mb"],
               "rss_end_mb": minutes[-1]["rss_mb"], "rss_growth_after_first_minute_pct": round(growth, 2),
               "p99_ms_per_minute": [m["p99_ms"] for m in minutes], "minutes": minutes}
    print(json.dumps({k: v for k, v in summary.items() if k != "minutes"}))
    return summary


def grid(args) -> dict:
    wav, table = three_second_wav(), {}
    for w in args.workers:
        for t in args.threads:
            port = args.port
            env = {"SER_INTRA_OP_THREADS": str(t)}
            with serving(ser_serve(port, w), port, env):
                for name in ("student", "teacher"):
                    req = multipart_request(TARGETS[name], port, wav)
                    load(port, req, 2, 1.0)
                    table[f"{name} w{w} t{t}"] = {"target": name, "workers": w, "threads": t,
                                                  **load(port, req, args.connections, args.seconds).row()}
                    print(json.dumps(table[f"{name} w{w} t{t}"]), flush=True)
    print("\n| target | workers | intra-op threads | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for r in table.values():
        print(f"| {r['target']} | {r['workers']} | {r['threads']} | {r['ok_per_s']} | {r['p50_ms']} | {r['p99_ms']} |")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name, fn in [("compare", compare), ("saturate", saturate), ("soak", soak), ("grid", grid)]:
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--port", type=int, default=18_500)
        p.add_argument("--out", type=Path, help="also write the results here as JSON")
    sub.choices["compare"].add_argument("--seconds", type=float, default=4)
    sub.choices["compare"].add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    sub.choices["compare"].add_argument("--rounds", type=int, default=3)
    sub.choices["compare"].add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS),
                                        help="the service's routes to measure (the baseline always runs)")
    sub.choices["compare"].add_argument("--workers", type=int, nargs="+", default=sorted({1, usable_cpus()}),
                                        help="`ser serve --workers N` of this checkout, one target per value "
                                        "(default: one process, and one per CPU)")
    sub.choices["compare"].add_argument("--checkout", type=Path, nargs="*", default=[],
                                        help="also measure `ser serve` of these checkouts (code and models/), "
                                             "e.g. a `git worktree` of the code before a change")
    sub.choices["saturate"].add_argument("--seconds", type=float, default=60)
    sub.choices["saturate"].add_argument("--connections", type=int, default=64)
    sub.choices["saturate"].add_argument("--retry-after", action="store_true", help="clients wait 1 s after a 503")
    sub.choices["soak"].add_argument("--minutes", type=float, default=10)
    sub.choices["soak"].add_argument("--share", type=float, default=0.7, help="of the saturated throughput")
    sub.choices["soak"].add_argument("--rate", type=float, help="requests/s (instead of measuring saturation)")
    sub.choices["soak"].add_argument("--connections", type=int, default=16)
    sub.choices["grid"].add_argument("--workers", type=int, nargs="+", default=[1, 2])
    sub.choices["grid"].add_argument("--threads", type=int, nargs="+", default=[1, 2])
    sub.choices["grid"].add_argument("--connections", type=int, default=8)
    sub.choices["grid"].add_argument("--seconds", type=float, default=5)
    run_mode(ap)


def run_mode(ap: argparse.ArgumentParser) -> None:
    """Runs the mode the command line chose (its `fn`) and writes its result to --out, if given."""
    args = ap.parse_args()
    result = args.fn(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
