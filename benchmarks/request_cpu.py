"""CPU milliseconds per request of the service's app, in-process, side by side with other checkouts.

    python -m benchmarks.request_cpu [--requests 400] [--rounds 5] [--route student] [--checkout DIR ...]

Each checkout (this one first) runs in a process of its own: `create_app()` with its shipped models
and default settings (speech gate on), loaded as `ser serve` loads them, answering the request of
benchmarks/load.py (a 3 s WAV of real speech as a multipart upload) through ASGI, one request
after another, with no socket. A round measures the CPU time (every thread) of --requests
requests; the checkouts alternate round by round, so drifting machine load hits them alike, and
the median round is reported. On a machine that other jobs share, CPU time per request is much
steadier than requests/s. Beside the whole request, the parts of it that are the model's work,
timed in the same process on the same clip: decoding the upload, the speech gate, and the
student's forward pass (`Models.answer` on the decoded samples holds the gate, the windows and
the model), so what is left is the web stack's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTES = {"student": "/predict?model=student", "auto": "/predict"}


def cpu_s() -> float:
    """CPU seconds of this process, every thread (this runs inside other checkouts: no devtools)."""
    return time.process_time()


# ---------- the child: one checkout's app, driven through ASGI ----------

async def measure(body: bytes, ctype: str, path: str, requests: int) -> dict:
    import logging

    from service.app import create_app
    from service.audio import load_audio
    from service.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=open(os.devnull, "w"))   # the access log, written
    app = create_app(Settings())
    runtime = app.state.runtime
    runtime.load()
    path, _, query = path.partition("?")
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", ctype.encode()),
               (b"content-length", str(len(body)).encode())]

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 50_000), "server": ("127.0.0.1", 8000)}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = []

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.Event().wait()   # the client stays connected

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"{path}: status {status}")

    def per_call_ms(fn, n: int) -> float:
        c0 = cpu_s()
        for _ in range(n):
            fn()
        return (cpu_s() - c0) * 1000 / n

    async with app.router.lifespan_context(app):
        for _ in range(50):   # warm-up
            await one()
        c0, loop0 = cpu_s(), time.thread_time()
        for _ in range(requests):
            await one()
        request_ms, loop_ms = ((t - t0) * 1000 / requests for t, t0 in ((cpu_s(), c0), (time.thread_time(), loop0)))
    wav = _file_part(body)
    audio = load_audio(wav)
    models, gate, student = runtime.loaded, runtime.gate, runtime.student
    windows, _ = student.windows(audio)
    return {"request_ms": request_ms, "loop_ms": loop_ms,
            "decode_ms": per_call_ms(lambda: load_audio(wav, max_duration_s=60.0), requests),
            "answer_ms": per_call_ms(lambda: models.answer(audio, "student", max_duration_s=60.0), requests),
            "gate_ms": per_call_ms(lambda: [gate.holds_speech(w) for w in windows], requests) if gate else 0.0,
            "forward_ms": per_call_ms(lambda: student.logits(windows), requests), "windows": len(windows)}


def _file_part(body: bytes) -> bytes:
    """The file's bytes out of the one-part multipart body that load.py sends."""
    start = body.index(b"\r\n\r\n") + 4
    return body[start:body.rindex(b"\r\n--", start)]


def child(args) -> None:
    request = json.loads(Path(args.child).read_text())
    result = asyncio.run(measure(Path(request["body"]).read_bytes(), request["ctype"], request["path"], args.requests))
    print(json.dumps(result))


# ---------- the parent: checkouts side by side ----------

def run_round(checkout: Path, request_file: Path, requests: int) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SER_")}, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(request_file),
                          "--requests", str(requests)], cwd=checkout, env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(f"{checkout}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400, help="requests per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--route", choices=list(ROUTES), default="student")
    ap.add_argument("--checkout", type=Path, nargs="*", default=[], help="other checkouts (code and models/)")
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.pop(0)   # this file's folder: the child imports the checkout's code alone
        return child(args)
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from benchmarks.load import three_second_wav
    from devtools.http import form, part

    req = form(part("file", three_second_wav()), path=ROUTES[args.route])
    checkouts = [ROOT, *(c.resolve() for c in args.checkout)]
    rounds: dict[Path, list[dict]] = {c: [] for c in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(req.body)
        request_file = Path(tmp) / "request.json"
        request_file.write_text(json.dumps({"body": str(Path(tmp) / "body"), "ctype": req.headers["Content-Type"],
                                            "path": req.path}))
        for i in range(args.rounds):
            for c in checkouts:
                rounds[c].append(run_round(c, request_file, args.requests))
                print(json.dumps({"round": i + 1, "checkout": str(c), **rounds[c][-1]}), flush=True)
    table = {str(c): {k: round(float(np.median([r[k] for r in rs])), 3) for k in rs[0]} for c, rs in rounds.items()}
    print(f"\n{args.route}, {args.requests} requests a round, median of {args.rounds} rounds, CPU ms per request\n"
          "| checkout | whole request | on the event loop | decode | speech gate | forward pass | Models.answer (gate + "
          "windows + model) | the rest (web stack) |\n|---|---|---|---|---|---|---|---|")
    for name, r in table.items():
        print(f"| {name} | {r['request_ms']} | {r['loop_ms']} | {r['decode_ms']} | {r['gate_ms']} | {r['forward_ms']} | "
              f"{r['answer_ms']} | {round(r['request_ms'] - r['decode_ms'] - r['answer_ms'], 3)} |")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
