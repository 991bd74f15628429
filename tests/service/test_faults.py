"""Faults against the real server (`ser serve` in a subprocess): clients that leave mid-upload
or mid-inference, a slow-loris upload, SIGTERM under load, bad bundles at start, a teacher that
disappears while the service runs."""

from __future__ import annotations

import concurrent.futures as cf
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.audio import encode, voice, wav_bytes
from devtools.process import rss_mb
from devtools.server import running_server


def post_wav(base: str, data: bytes, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{base}/predict?model=student", content=data, headers={"content-type": "audio/wav"},
                      timeout=timeout)


def open_upload(base: str, length: int, first: bytes) -> socket.socket:
    """Start a raw upload that announces `length` bytes and sends only `first`."""
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/wav\r\n"
              f"Content-Length: {length}\r\n\r\n".encode() + first)
    return s


def gauge(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))


def settle(base: str, timeout_s: float = 10) -> None:
    """Wait until only the metrics request itself is in flight."""
    deadline = time.monotonic() + timeout_s
    while gauge(base, "ser_requests_in_flight") > 1:
        assert time.monotonic() < deadline, "requests stayed in flight"
        time.sleep(0.1)


def test_clients_that_leave_mid_upload_or_mid_inference_leak_nothing(student_bundle):
    with running_server(student_bundle, settings={"SER_MAX_CONCURRENCY": "1", "SER_MAX_QUEUE": "8"}) as (base, proc):
        clip = wav_bytes(30.0)

        def storm() -> None:
            for _ in range(20):   # mid-upload: a third of the body, then gone
                open_upload(base, len(clip), clip[: len(clip) // 3]).close()
            socks = [open_upload(base, len(clip), clip) for _ in range(8)]   # whole body, then gone mid-inference
            time.sleep(0.05)
            for s in socks:
                s.close()
            settle(base)

        t0 = psutil.Process(proc.pid).num_threads()
        storm()
        rss1 = rss_mb(proc.pid)
        storm()
        # Worker threads come from anyio's pool, capped at 40: abandoned requests leave none behind.
        assert psutil.Process(proc.pid).num_threads() <= t0 + 40
        assert rss_mb(proc.pid) - rss1 < 10
        # Every slot came back: a full burst (1 running + 8 queued) is served without a 503.
        with cf.ThreadPoolExecutor(9) as pool:
            codes = [r.status_code for r in pool.map(lambda _: post_wav(base, wav_bytes(2.0)), range(9))]
        assert codes == [200] * 9
        log = proc.stdout
    # An abandoned upload is logged as 499 client_disconnected, never as a 5xx.
    lines = [json.loads(ln) for ln in log.read().splitlines() if ln.startswith("{")]
    assert any(ln["error"] == "client_disconnected" and ln["status"] == 499 for ln in lines)
    assert not [ln for ln in lines if ln["status"] >= 500]


def test_a_slow_loris_upload_is_cut_off_and_holds_no_inference_slot(student_bundle):
    with running_server(student_bundle, settings={"SER_MAX_CONCURRENCY": "1", "SER_UPLOAD_TIMEOUT_S": "2"}) as (base, proc):
        loris = [open_upload(base, 50_000, b"RIFF") for _ in range(5)]
        t0 = time.monotonic()
        for _ in range(4):   # trickle a byte per 0.3 s, well inside any per-read timeout
            time.sleep(0.3)
            for s in loris:
                s.sendall(b"\0")
        # Meanwhile the single inference slot serves a normal client at once.
        r = post_wav(base, wav_bytes(2.0), timeout=10)
        assert r.status_code == 200 and time.monotonic() - t0 < 2.5
        for s in loris:
            answer = b"".join(iter(lambda: s.recv(65_536), b"")).decode("latin-1")   # until the server closes
            assert answer.startswith("HTTP/1.1 408") and '"upload_timeout"' in answer
            s.close()
        assert 1.8 < time.monotonic() - t0 < 6


def test_sigterm_under_load_finishes_in_flight_requests_and_refuses_new_ones(student_bundle):
    with running_server(student_bundle, settings={"SER_MAX_CONCURRENCY": "1", "SER_MAX_QUEUE": "32"}) as (base, proc):
        clip = wav_bytes(10.0)
        with cf.ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(post_wav, base, clip) for _ in range(12)]
            deadline = time.monotonic() + 10
            while gauge(base, "ser_requests_in_flight") < 13 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.TransportError):   # the listening socket is closed: refused cleanly
                post_wav(base, clip, timeout=5)
            codes = [f.result().status_code for f in futures]
        assert codes == [200] * 12   # every request accepted before SIGTERM got its answer
        assert proc.wait(30) in (0, -signal.SIGTERM)


def start_fails(student: Path, teacher: Path | str = "none") -> subprocess.CompletedProcess:
    env = {"SER_STUDENT_BUNDLE": str(student), "SER_TEACHER_BUNDLE": str(teacher), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_corrupt_or_missing_bundle_stops_the_real_server_at_start(student_bundle, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(student_bundle.path, corrupt)
    data = bytearray((corrupt / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corrupt / "model.onnx").write_bytes(bytes(data))
    for folder, message in [(corrupt, "sha256"), (tmp_path / "missing", "no student bundle folder")]:
        t0 = time.monotonic()
        r = start_fails(folder)
        assert r.returncode != 0 and time.monotonic() - t0 < 30
        assert str(folder) in r.stderr + r.stdout and message in r.stderr + r.stdout


def test_a_teacher_that_disappears_at_run_time(student_bundle, teacher_bundle, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_bundle.path, teacher)
    moved = type(teacher_bundle)(**{**teacher_bundle.__dict__, "path": teacher})
    clip = encode(voice(2.0), 16_000)
    with running_server(student_bundle, moved) as (base, _):
        shutil.rmtree(teacher)   # the volume goes away: the loaded session keeps answering
        r = httpx.post(f"{base}/predict/teacher", content=clip, headers={"content-type": "audio/wav"}, timeout=30)
        assert r.status_code == 200 and r.json()["model"]["role"] == "teacher"
    r = start_fails(student_bundle.path, teacher)   # restarted without it: the named teacher must exist
    assert r.returncode != 0 and f"no teacher bundle folder at {teacher}" in r.stderr, r.stderr
    with running_server(student_bundle) as (base, _):   # student-only, asked for (SER_TEACHER_BUNDLE=none)
        r = httpx.post(f"{base}/predict/teacher", content=clip, headers={"content-type": "audio/wav"}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "teacher_unavailable"
        r = httpx.post(f"{base}/predict", content=clip, headers={"content-type": "audio/wav"}, timeout=30)
        assert r.status_code == 200 and r.json()["fell_back"] is False


def test_under_overload_a_refusal_comes_before_the_upload_is_parsed(student_bundle):
    """While the slot and the queue are taken, even a body that is not valid multipart gets the
    503: the service did not spend the work of parsing it."""
    import asyncio

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None, max_concurrency=1, max_queue=0))

    async def run():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
                busy = asyncio.create_task(c.post("/predict", content=wav_bytes(60.0),
                                                  headers={"content-type": "audio/wav"}))
                while not app.state.runtime.limiter.full():
                    await asyncio.sleep(0.001)
                refused = await c.post("/predict", content=b"--x\r\nnot a form", headers={
                    "content-type": "multipart/form-data; boundary=x"})
                return refused, await busy

    refused, busy = asyncio.run(run())
    assert busy.status_code == 200
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
    assert refused.headers["retry-after"] == "1"
