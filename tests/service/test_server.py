"""The real server: `ser serve` in a subprocess on a free port, a real clip POSTed to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import RAVDESS_CLIP, wav_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(student_bundle, teacher_bundle):
    port = free_port()
    env = {**os.environ, "SER_STUDENT_BUNDLE": str(student_bundle.path), "SER_TEACHER_BUNDLE": str(teacher_bundle.path)}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"server exited early:\n{proc.stdout.read()}")
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not become ready in 60 s")
    yield base, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_real_server_answers_a_real_clip_and_stops_on_sigterm(server):
    base, proc = server
    if RAVDESS_CLIP.is_file():
        data, name = RAVDESS_CLIP.read_bytes(), RAVDESS_CLIP.name
    else:
        data, name = wav_bytes(2.0), "generated.wav"
    r = httpx.post(f"{base}/predict", files={"file": (name, data)}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["label"] in ("angry", "disgust", "fear", "happy", "sad", "neutral")
    rid = r.headers["x-request-id"]
    proc.send_signal(signal.SIGTERM)
    # uvicorn drains, then re-raises the captured SIGTERM so the exit status tells why it stopped
    assert proc.wait(30) in (0, -signal.SIGTERM)
    log = proc.stdout.read()
    # one structured JSON access-log line per request, carrying the request id
    assert f'"request_id": "{rid}"' in log and '"route": "/predict"' in log
