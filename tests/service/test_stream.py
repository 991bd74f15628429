"""WebSocket /stream on the real server (`ser serve` under uvicorn) with a real `websockets` client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from service.audio import load_audio, trim_silence
from devtools.audio import encode, voice
from devtools.server import running_server

websockets = pytest.importorskip("websockets", reason="the websockets package is not installed")
from websockets.asyncio.client import connect  # noqa: E402

SETTINGS = {"SER_MAX_STREAMS": "4", "SER_STREAM_IDLE_S": "1.5", "SER_STREAM_MAX_FRAME_BYTES": "65536",
            "SER_STREAM_SEND_QUEUE": "8", "SER_STREAM_MAX_S": "30"}
KEY = "k" * 8 + "-stream-key"


@pytest.fixture(scope="module")
def server(student_bundle, teacher_bundle):
    with running_server(student_bundle, teacher_bundle, settings=SETTINGS) as (base, _):
        yield base


def ws_url(base: str, **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return base.replace("http://", "ws://") + "/stream" + (f"?{q}" if q else "")


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def chunks(data: bytes, sizes=(3200,)) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        out.append(data[i:i + sizes[k % len(sizes)]])
        i, k = i + sizes[k % len(sizes)], k + 1
    return out


async def talk(url: str, frames: list, *, end: bool = True, **kw) -> tuple[list[dict], int]:
    """Send the frames (bytes: audio, str: a text frame), then {"type": "end"}; returns (events, close code)."""
    async with connect(url, proxy=None, compression=None, open_timeout=10, **kw) as ws:
        async def send():
            for f in frames:
                await ws.send(f)
            if end:
                await ws.send(json.dumps({"type": "end"}))
        sender = asyncio.create_task(send())
        events = await read_all(ws)
        sender.cancel()
        return events, ws.close_code


async def read_all(ws) -> list[dict]:
    """Every event until the close, whatever its code."""
    events = []
    try:
        async for m in ws:
            events.append(json.loads(m))
    except websockets.ConnectionClosed:
        pass
    return events


def stream(url: str, frames: list, **kw) -> tuple[list[dict], int]:
    return asyncio.run(asyncio.wait_for(talk(url, frames, **kw), 60))


def predict_segments(base: str, wav: bytes, model: str = "student") -> dict:
    r = httpx.post(f"{base}/predict", params={"model": model, "segments": "true", "top_k": 6},
                   content=wav, headers={"content-type": "audio/wav"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def assert_same_windows(events: list[dict], answer: dict) -> None:
    windows = [e for e in events if e["type"] == "window"]
    assert len(windows) == len(answer["segments"]) > 0
    for e, s in zip(windows, answer["segments"]):
        assert (e["start_s"], e["end_s"], e["label"], e["no_speech"], e["speech_share"]) == \
            (s["start_s"], s["end_s"], s["label"], s["no_speech"], s["speech_share"])
        for label, p in s["probabilities"].items():   # both rounded to 4 digits
            assert abs(e["probabilities"][label] - p) <= 1.0001e-4, (e, s)


def test_events_have_the_documented_fields_and_advance_by_hop(server, student_bundle):
    x = voice(3.0, seed=5)
    events, code = stream(ws_url(server, hop_s=0.25, top_k=2), chunks(s16(x), (1000, 3202, 640)))
    assert code == 1000
    *windows, summary = events
    # a 1 s window every 0.25 s: starts 0 .. 2.0, then nothing partial is left over
    assert [w["start_s"] for w in windows] == [0.25 * i for i in range(9)]
    for w in windows:
        assert set(w) == {"type", "start_s", "end_s", "label", "confidence", "probabilities", "top_k", "model",
                          "fell_back", "lag_ms", "no_speech", "speech_share"}
        assert w["type"] == "window" and w["end_s"] == pytest.approx(w["start_s"] + 1.0)
        assert set(w["probabilities"]) == set(student_bundle.labels) and len(w["top_k"]) == 2
        assert w["label"] == w["top_k"][0]["label"] and w["confidence"] == w["top_k"][0]["probability"]
        assert w["model"] == {"name": "tiny-student", "version": "0.1.0", "role": "student", "precision": "float32"}
        assert w["fell_back"] is False and 0 <= w["lag_ms"] < 5000
    assert summary["type"] == "summary" and summary["windows"] == 9 and summary["duration_s"] == 3.0
    mean = {k: np.mean([w["probabilities"][k] for w in windows]) for k in student_bundle.labels}
    assert summary["label"] == max(mean, key=mean.get)
    assert summary["probabilities"] == pytest.approx(mean, abs=3e-4)


def test_windows_match_predict_segments_for_resampled_generated_audio(server):
    """44.1 kHz 16-bit PCM in odd-sized frames, resampled as it streams; the same file to /predict."""
    x = voice(4.3, sr=44_100, seed=6)
    wav = encode(x, 44_100, "WAV", "PCM_16")
    pcm = sf.read(io.BytesIO(wav), dtype="int16")[0].astype("<i2").tobytes()
    events, code = stream(ws_url(server, sample_rate=44_100, hop_s=0.5, top_k=6), chunks(pcm, (882, 4410, 1234)))
    assert code == 1000
    assert_same_windows(events, predict_segments(server, wav))


def test_windows_match_predict_segments_for_a_real_clip(server, ravdess_clip):
    """RAVDESS speech: the stream gets the clip as /predict sees it after trimming its silence
    (a live stream is never trimmed), as float32 at 16 kHz; /predict gets the same audio as a WAV."""
    x = trim_silence(load_audio(ravdess_clip))
    wav = encode(x, 16_000, "WAV", "FLOAT")
    events, code = stream(ws_url(server, encoding="pcm_f32le", hop_s=0.5, top_k=6),
                          chunks(x.astype("<f4").tobytes(), (6400,)))
    assert code == 1000
    assert_same_windows(events, predict_segments(server, wav))


def test_a_stream_shorter_than_a_window_gets_one_padded_window_and_an_empty_one_none(server):
    x = voice(0.6, seed=7)
    events, code = stream(ws_url(server, top_k=6), [s16(x)])
    assert code == 1000 and [e["type"] for e in events] == ["window", "summary"]
    assert (events[0]["start_s"], events[0]["end_s"]) == (0.0, 0.6)
    assert_same_windows(events, predict_segments(server, encode(x, 16_000, "WAV", "PCM_16")))
    events, code = stream(ws_url(server), [])
    assert code == 1000 and events == [{"type": "summary", "duration_s": 0.0, "label": None, "confidence": None,
                                        "probabilities": {}, "top_k": [], "no_speech": True, "speech_share": None,
                                        "windows": 0, "speech_windows": 0}]


def test_labels_and_silence(server):
    """labels=: every event over exactly those labels; a stretch of silence: its windows are
    answered "no speech" and the summary is the mean over the others."""
    x = np.concatenate([voice(1.0, seed=8), np.zeros(3 * 16_000, np.float32)])
    events, code = stream(ws_url(server, labels="sad,angry", hop_s=1.0), chunks(s16(x)))
    *windows, summary = events
    assert code == 1000 and [w["no_speech"] for w in windows] == [False, True, True, True]
    assert list(windows[0]["probabilities"]) == ["angry", "sad"] and windows[0]["label"] in ("angry", "sad")
    assert sum(windows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert all(w["label"] is None and w["probabilities"] == {} and w["speech_share"] == 0 for w in windows[1:])
    assert summary["speech_windows"] == 1 and summary["windows"] == 4 and summary["no_speech"] is False
    assert summary["probabilities"] == windows[0]["probabilities"]
    events, code = stream(ws_url(server), chunks(s16(np.zeros(2 * 16_000, np.float32))))
    assert code == 1000 and events[-1]["no_speech"] is True and events[-1]["label"] is None


def test_teacher_and_stream_limit_of_stream_time(server):
    events, code = stream(ws_url(server, model="teacher", hop_s=2.0), chunks(s16(voice(4.0))))
    assert code == 1000 and {e["model"]["role"] for e in events[:-1]} == {"teacher"}
    assert [e["start_s"] for e in events[:-1]] == [0.0, 2.0]
    # SER_STREAM_MAX_S=30: past it the server stops reading, sends the summary and closes normally
    events, code = stream(ws_url(server, hop_s=1.0), chunks(s16(voice(40.0))), end=False)
    assert code == 1000 and events[-1]["type"] == "summary" and events[-1]["duration_s"] == 30.0


def test_model_auto_falls_back_per_window(unsure_student_bundle, teacher_bundle):
    with running_server(unsure_student_bundle, teacher_bundle) as (base, _):
        events, code = stream(ws_url(base, model="auto"), chunks(s16(voice(2.0))))
    assert code == 1000 and len(events) == 4
    for e in events[:-1]:
        assert e["model"]["role"] == "teacher" and e["fell_back"] is True and e["label"] == "sad"
    assert events[-1]["label"] == "sad"


BAD = [
    ({"sample_rate": 7000}, [], 4400, "invalid_parameter"),
    ({"encoding": "mp3"}, [], 4400, "invalid_parameter"),
    ({"hop_s": 0.1}, [], 4400, "invalid_parameter"),
    ({"hop_s": 1.5}, [], 4400, "invalid_parameter"),          # longer than the student's 1 s window
    ({"labels": "angry,bogus"}, [], 4400, "invalid_parameter"),
    ({}, ["not json"], 1003, "invalid_message"),
    ({}, ['{"type": "pause"}'], 1003, "invalid_message"),
    ({}, [b"\x00\x01\x02"], 1003, "invalid_message"),          # half a 16-bit sample
    ({"encoding": "pcm_f32le"}, [b"\x00" * 6], 1003, "invalid_message"),
    ({"encoding": "pcm_f32le"}, [np.array([0.1, np.inf], "<f4").tobytes()], 1007, "invalid_audio"),
    ({}, [b"\x00" * 65538], 1009, "frame_too_large"),
]


@pytest.mark.parametrize("query, frames, close, code", BAD, ids=[b[3] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_gets_an_error_frame_and_its_close_code_while_others_stream_on(server, query, frames, close, code):
    async def both():
        steady = asyncio.create_task(paced(ws_url(server, hop_s=0.5), s16(voice(2.0))))
        await asyncio.sleep(0.05)
        bad = await talk(ws_url(server, **query), frames, end=False)
        return bad, await steady

    (events, got), (good_events, good_code) = asyncio.run(asyncio.wait_for(both(), 60))
    assert got == close and len(events) == 1, events
    assert events[0]["type"] == "error" and events[0]["code"] == code and events[0]["message"]
    assert good_code == 1000 and [e["type"] for e in good_events] == ["window"] * 3 + ["summary"]


async def paced(url: str, pcm: bytes, frame: int = 3200, every_s: float = 0.02) -> tuple[list[dict], int]:
    """A well-behaved stream that stays open while another one misbehaves."""
    async with connect(url, proxy=None, compression=None) as ws:
        for f in chunks(pcm, (frame,)):
            await ws.send(f)
            await asyncio.sleep(every_s)
        await ws.send(json.dumps({"type": "end"}))
        return await read_all(ws), ws.close_code


def test_teacher_unavailable_and_an_idle_stream(student_bundle):
    with running_server(student_bundle, None, settings={"SER_STREAM_IDLE_S": "0.5"}) as (base, _):
        events, code = stream(ws_url(base, model="teacher"), [], end=False)
        assert (code, events[0]["code"]) == (4503, "teacher_unavailable")
        events, code = stream(ws_url(base, model="auto"), [s16(voice(1.0))])   # auto without a teacher: the student
        assert code == 1000 and events[0]["model"]["role"] == "student"
        events, code = stream(ws_url(base), [s16(voice(0.5))], end=False)   # then nothing
        assert code == 4408 and [e["type"] for e in events] == ["error"] and events[0]["code"] == "stream_idle"


def test_api_key_as_header_or_subprotocol_and_origin(student_bundle):
    with running_server(student_bundle, None, settings={"SER_API_KEY": KEY}) as (base, _):
        url, audio = ws_url(base), [s16(voice(1.0))]
        for kw in ({}, {"additional_headers": {"X-API-Key": "wrong" * 4}}, {"subprotocols": ["ser.key.nope"]}):
            events, code = stream(url, audio, end=False, **kw)
            assert code == 1008 and events[0]["code"] == "unauthorized", kw
        events, code = stream(url, audio, additional_headers={"X-API-Key": KEY})
        assert code == 1000 and events[-1]["windows"] == 1

        async def subprotocol():   # what a browser does; the server picks ser.stream, so the key is not echoed
            async with connect(url, proxy=None, subprotocols=["ser.stream", f"ser.key.{KEY}"]) as ws:
                await ws.send(audio[0])
                await ws.send(json.dumps({"type": "end"}))
                return ws.subprotocol, await read_all(ws), ws.close_code
        chosen, events, code = asyncio.run(subprotocol())
        assert chosen == "ser.stream" and code == 1000 and events[-1]["windows"] == 1
        # a page from another site may not stream here, even with the key
        events, code = stream(url, audio, additional_headers={"X-API-Key": KEY}, origin="http://evil.example")
        assert code == 1008 and events[0]["code"] == "forbidden_origin"
        events, code = stream(url, audio, additional_headers={"X-API-Key": KEY}, origin=base)
        assert code == 1000


def test_1013_when_full_and_the_open_streams_go_on(server):
    async def run():
        async with contextlib.AsyncExitStack() as stack:
            held = [await stack.enter_async_context(connect(ws_url(server), proxy=None)) for _ in range(4)]
            refused, code = await talk(ws_url(server), [], end=False)
            for ws in held:
                await ws.send(s16(voice(1.0)))
                await ws.send(json.dumps({"type": "end"}))
            done = [(await read_all(ws), ws.close_code) for ws in held]
        return refused, code, done

    refused, code, done = asyncio.run(asyncio.wait_for(run(), 60))
    assert code == 1013 and refused[0]["code"] == "overloaded"
    assert all(c == 1000 and ev[-1]["windows"] == 1 for ev, c in done)
    metrics = httpx.get(f"{server}/metrics").text
    assert 'ser_stream_closes_total{code="1013"}' in metrics and "ser_streams_open 0.0" in metrics
    assert 'ser_stream_windows_total{model="student"}' in metrics and "ser_stream_event_lag_seconds_bucket" in metrics


def test_a_client_close_code_of_its_own_is_counted_as_other(server):
    async def run():
        async with connect(ws_url(server), proxy=None) as ws:
            await ws.send(s16(voice(0.5)))
            await ws.close(code=4321)
    asyncio.run(asyncio.wait_for(run(), 30))
    deadline = time.monotonic() + 10
    while 'ser_stream_closes_total{code="other"}' not in (metrics := httpx.get(f"{server}/metrics").text):
        assert time.monotonic() < deadline, "the client's close was never counted"
        time.sleep(0.1)
    assert 'code="4321"' not in metrics


def test_a_client_that_stops_reading_is_closed_with_1013(student_bundle):
    """The client sends audio as fast as it can and reads nothing for a while: the server's events
    back up past SER_STREAM_SEND_QUEUE, the server stops reading, and after SER_STREAM_IDLE_S it
    gives up on the client instead of buffering."""
    settings = {"SER_STREAM_SEND_QUEUE": "8", "SER_STREAM_IDLE_S": "1"}
    with running_server(student_bundle, None, settings=settings) as (server, _):
        sent, events, code = asyncio.run(asyncio.wait_for(not_reading(server), 60))
    assert code == 1013 and events[-1]["code"] == "slow_consumer", events[-1:]
    windows = [e for e in events if e["type"] == "window"]
    # what it held back for the client: the send queue (8), the windows in flight and the socket buffers
    assert sent < 4000 and len(windows) < 4 * sent, (sent, len(windows))


async def not_reading(server: str) -> tuple[int, list[dict], int]:
    """Send a second of audio at a time without reading; then read everything left."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # little room for unread events
    sock.connect(("127.0.0.1", int(server.rsplit(":", 1)[1])))
    async with connect(ws_url(server, hop_s=0.25), sock=sock, proxy=None, compression=None, max_queue=1) as ws:
        second, sent = s16(voice(1.0)), 0
        while sent < 4000:   # up to 4000 s of audio, 4 events a second
            try:
                await asyncio.wait_for(ws.send(second), 2)
            except (TimeoutError, websockets.ConnectionClosed):
                break   # the server has stopped reading: it holds the stream back
            sent += 1
        events = await read_all(ws)   # now read what the server still sends
        return sent, events, ws.close_code


def ser_stream(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "stream", *args],
                          capture_output=True, text=True, timeout=60)


def test_ser_stream_prints_one_line_per_event(server, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(voice(2.2, seed=8), 16_000, "WAV", "PCM_16"))
    out = ser_stream(str(clip), "--url", server, "--speed", "0", "--json", "--hop", "0.5", "--top-k", "6")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["type"] for e in events] == ["window"] * 4 + ["summary"]   # the last: 1.5 s to the end
    assert_same_windows(events, predict_segments(server, clip.read_bytes()))
    # for people, at 4x real time: it takes about 2.2 s / 4
    started = time.monotonic()
    out = ser_stream(str(clip), "--url", server, "--speed", "4")
    assert out.returncode == 0 and time.monotonic() - started > 0.5
    lines = out.stdout.splitlines()
    assert len(lines) == 5 and lines[0].split()[:4] == ["0.00", "-", "1.00", "s"] and "student" in lines[0]
    assert lines[-1].startswith("summary: 2.20 s, 4 windows: ")


def test_ser_stream_labels_and_no_speech(server, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(np.concatenate([voice(1.0, seed=8), np.zeros(16_000, np.float32)]), 16_000, "WAV", "PCM_16"))
    out = ser_stream(str(clip), "--url", server, "--speed", "0", "--hop", "1", "--labels", "angry,sad", "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.splitlines()[0])
    assert list(first["probabilities"]) == ["angry", "sad"]
    out = ser_stream(str(clip), "--url", server, "--speed", "0", "--hop", "1")
    assert out.returncode == 0 and "no speech" in out.stdout.splitlines()[1], out.stdout


def test_ser_stream_errors(server, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(voice(1.0), 16_000, "WAV", "PCM_16"))
    out = ser_stream(str(clip), "--url", server, "--hop", "5")
    assert out.returncode == 1 and out.stdout.startswith("error invalid_parameter: query.hop_s")
    out = ser_stream(str(tmp_path / "missing.wav"), "--url", server)
    assert out.returncode == 2 and "missing.wav: no such file" in out.stderr
    out = ser_stream()
    assert out.returncode == 2 and "give an audio FILE or --mic" in out.stderr


def test_ser_stream_mic_says_what_it_needs():
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        out = ser_stream("--mic")
        assert out.returncode == 2 and "pip install 'speech-emotion-distill[mic]'" in out.stderr
    else:
        pytest.skip("sounddevice is installed: there is no message to check, and no microphone in CI")


def test_the_readme_client_runs(server, tmp_path, capsys):
    """The 15-line client of README.md, as printed there, against the real server."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("### Live streams", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 20
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(voice(1.6, sr=22_050), 22_050, "WAV", "PCM_16"))
    code = code.replace('asyncio.run(stream("clip.wav"))', f'asyncio.run(stream({str(clip)!r}, {ws_url(server)[:-7]!r}))')
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["window"] * 3 + ["summary"]
    assert lines[0].split()[1] == "0.0" and lines[1].split()[1] == "0.5"
