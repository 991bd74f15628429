"""The real server: `ser serve` in a subprocess on a free port, a real clip POSTed to it."""

from __future__ import annotations

import signal

import httpx

from devtools.audio import wav_bytes
from devtools.data import RAVDESS_CLIP


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
    # one line when ready (the bundles and the address), one when draining, one when stopped
    lines = log.splitlines()
    ready = next(line for line in lines if line.startswith("ready: "))
    assert "student tiny-student 0.1.0" in ready and "teacher tiny-teacher" in ready and f"on {base} (" in ready
    assert any(line.startswith("draining: ") for line in lines) and lines[-1] == "stopped"
