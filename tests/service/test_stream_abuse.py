"""One client against `ser serve` with its default settings: the attacks of docs/reliability.md
("Live streams and the teacher under abuse"), each answered by a limit. Real servers, real
clients, 127.0.0.1 only; the heavy ones are slow."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest

from service.audio import SAMPLE_RATE
from tests.service.test_stream import paced, read_all, s16, stream, ws_url
from devtools.audio import encode, voice
from devtools.process import peak_rss_mb, reset_peak, rss_mb
from devtools.server import running_server
from tests.support.ws_raw import BINARY, CONT, frame, handshake, read_until_close

websockets = pytest.importorskip("websockets", reason="the websockets package is not installed")
from websockets.asyncio.client import connect  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(student_bundle):
    """Default settings, but for a rate window short enough for a fast test."""
    with running_server(student_bundle, None, settings={"SER_STREAM_RATE_WINDOW_S": "1"}) as (base, proc):
        yield base, proc


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def server_log(proc) -> str:
    proc.kill()
    return proc.stdout.read()


async def trickle(url: str, every_s: float, samples: int = 1, until_s: float = 30) -> tuple[float, int | None, list]:
    """Send `samples` samples every `every_s` until the server closes; (seconds open, close code, events)."""
    started = time.monotonic()
    async with connect(url, proxy=None, compression=None, open_timeout=30) as ws:
        async def send():
            with contextlib.suppress(websockets.ConnectionClosed):
                while time.monotonic() - started < until_s:
                    await ws.send(b"\x01\x00" * samples)
                    await asyncio.sleep(every_s)
        sender = asyncio.create_task(send())
        events = await read_all(ws)
        sender.cancel()
        return time.monotonic() - started, ws.close_code, events


def test_a_stream_far_below_real_time_is_closed_and_one_in_real_time_is_not(served):
    base, _ = served
    seconds, code, events = asyncio.run(trickle(ws_url(base), every_s=0.3, samples=32, until_s=8))
    assert code == 4408 and events[-1]["code"] == "stream_too_slow" and seconds < 4, (seconds, code, events)
    assert "SER_STREAM_MIN_SPEED" in events[-1]["message"]
    # 0.1 s of audio every 0.1 s for 2.5 s: held, whatever the window
    events, code = asyncio.run(paced(ws_url(base), s16(voice(2.5)), frame=3200, every_s=0.1))
    assert code == 1000 and events[-1]["type"] == "summary"
    assert 'ser_errors_total{code="stream_too_slow"}' in httpx.get(f"{base}/metrics").text


@pytest.mark.slow
def test_slow_streams_cannot_hold_every_slot(student_bundle):
    """200 streams (the default cap) each sending one sample every 3.3 s: before, all 200 were
    open after 16 s and every new stream got 1013."""
    with running_server(student_bundle, None) as (base, _):
        async def run():
            clients = [asyncio.create_task(trickle(ws_url(base), every_s=3.3, until_s=40)) for _ in range(200)]
            await asyncio.sleep(16)
            still_open = sum(not c.done() for c in clients)
            fresh = await asyncio.wait_for(trickle(ws_url(base), every_s=0.05, samples=800, until_s=1), 30)
            results = await asyncio.gather(*clients)
            return still_open, fresh, results
        still_open, (_, fresh_code, fresh_events), results = asyncio.run(asyncio.wait_for(run(), 120))
    print(f"slow streams: {still_open} of 200 open after 16 s")
    assert still_open < 20, still_open
    assert {code for _, code, _ in results} == {4408} and all(e[-1]["code"] == "stream_too_slow" for _, _, e in results)
    assert fresh_code != 1013 and fresh_events[0]["type"] == "window", fresh_events[:1]


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 1000, '{"type": "end", "x": ' + "[" * 900 + "]" * 900 + "}"],
                         ids=["100k-deep", "1000-deep", "900-deep-in-an-end"])
def test_deeply_nested_json_is_an_invalid_message_without_a_traceback(student_bundle, text):
    with running_server(student_bundle, None) as (base, proc):
        events, code = stream(ws_url(base), [text], end=False)
        log = server_log(proc)
    assert code == 1003 and [e["code"] for e in events] == ["invalid_message"], (code, events)
    assert "Traceback" not in log and "internal_error" not in log


def test_a_flood_of_empty_continuation_frames_is_closed_at_once(served):
    base, _ = served
    sock, head = handshake(port_of(base))
    assert head.startswith(b"HTTP/1.1 101")
    started = time.monotonic()
    with sock:
        with contextlib.suppress(OSError):   # the server closes while the flood is being sent
            sock.sendall(frame(BINARY, b"\0\0", fin=False) + frame(CONT, fin=False) * 20_000)
        events, code = read_until_close(sock)
    assert code == 1008 and events[-1]["code"] == "frame_flood", (code, events)
    assert time.monotonic() - started < 5


def test_a_flood_of_empty_messages_is_closed(served):
    base, _ = served
    sock, _ = handshake(port_of(base))
    with sock:
        with contextlib.suppress(OSError):
            sock.sendall(frame(BINARY) * 20_000)
        events, code = read_until_close(sock)
    assert code == 1008 and events[-1]["code"] == "frame_flood", (code, events)


def test_audio_as_fast_as_the_server_takes_it_is_never_a_flood(served):
    """3,000 frames of 20 ms (60 s of audio) sent at once: far more than 1,000 frames a second,
    but frames of audio, not a flood."""
    base, _ = served
    events, code = stream(ws_url(base, hop_s=1.0), [s16(voice(0.02, seed=i % 7)) for i in range(3000)])
    assert code == 1000 and events[-1]["duration_s"] == 60.0, events[-1:]


def test_a_message_in_too_many_fragments_is_closed(served):
    base, _ = served
    sock, _ = handshake(port_of(base))
    with sock:
        with contextlib.suppress(OSError):
            sock.sendall(frame(BINARY, b"\0\0", fin=False) + frame(CONT, b"\0\0", fin=False) * 100)
        events, code = read_until_close(sock)
    assert code == 1008 and "fragments" in events[-1]["message"], (code, events)


@pytest.mark.slow
def test_a_continuation_flood_does_not_stall_predict(student_bundle):
    """2,000,000 empty continuation frames (12 MB) on one stream: before, the stream was held for
    12 s and a /predict meanwhile waited 11.9 s (p50 7 ms idle)."""
    wav = encode(voice(3.0, seed=3), SAMPLE_RATE, "WAV", "PCM_16")
    with running_server(student_bundle, None) as (base, _):
        def p50() -> float:
            times = []
            with httpx.Client(base_url=base, timeout=60) as c:
                for _ in range(15):
                    t0 = time.perf_counter()
                    assert c.post("/predict", content=wav, headers={"content-type": "audio/wav"}).status_code == 200
                    times.append(time.perf_counter() - t0)
            return statistics.median(times)

        idle = p50()
        sock, _ = handshake(port_of(base))
        result = {}

        def flood():
            started = time.monotonic()
            with contextlib.suppress(OSError):
                sock.sendall(frame(BINARY, b"\0\0", fin=False) + frame(CONT, fin=False) * 2_000_000)
            result["close"] = read_until_close(sock)
            result["seconds"] = time.monotonic() - started

        attacker = threading.Thread(target=flood)
        attacker.start()
        during = p50()
        attacker.join(60)
        sock.close()
    events, code = result["close"]
    print(f"continuation flood: closed after {result['seconds']:.3f} s; /predict p50 {idle * 1000:.1f} ms idle, "
          f"{during * 1000:.1f} ms during")
    assert code == 1008 and events[-1]["code"] == "frame_flood" and result["seconds"] < 5, result
    assert during <= 4.5 * idle, (during, idle)


def deflate_bomb(size: int = 15 * 2**20) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -12)   # raw deflate, as permessage-deflate sends it
    return z.compress(b"\0" * size) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]


def test_permessage_deflate_is_refused_and_bombs_cost_nothing(student_bundle):
    """20 streams each sending 15 KB that inflates to 15 MiB: before, RSS +268 MB."""
    bomb = frame(BINARY, deflate_bomb(), rsv1=True)
    assert len(bomb) < 20_000
    with running_server(student_bundle, None) as (base, proc):
        socks = [handshake(port_of(base), Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits")
                 for _ in range(20)]
        assert all(head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" not in head.lower() for _, head in socks)
        before = rss_mb(proc.pid)
        reset_peak(proc.pid)
        for sock, _ in socks:
            sock.sendall(bomb)
        closes = [read_until_close(sock)[1] for sock, _ in socks]
        rise_mb = peak_rss_mb(proc.pid) - before
        for sock, _ in socks:
            sock.close()
    print(f"deflate bombs: peak RSS +{rise_mb:.1f} MB")
    assert set(closes) == {1002}, closes   # RSV1 without the extension: a protocol error, nothing inflated
    assert rise_mb < 100, rise_mb


def test_a_frame_over_the_limit_is_refused_from_its_header(served):
    """A 16 MiB frame announced: refused as its header arrives, before a byte of it is read."""
    base, _ = served
    sock, _ = handshake(port_of(base))
    with sock:
        sock.sendall(bytes([0x82, 0x80 | 127]) + (16 * 2**20).to_bytes(8, "big") + b"\0\0\0\0" + b"\0" * 1024)
        events, code = read_until_close(sock)
    assert code == 1009 and events[-1]["code"] == "frame_too_large" and "SER_STREAM_MAX_FRAME_BYTES" in events[-1]["message"]


def test_a_rebinding_host_is_refused_before_any_work(served):
    """A page on rebind.example whose name now points at 127.0.0.1: its Origin matches its Host,
    so only the Host allow-list stops it."""
    base, _ = served
    port, evil = port_of(base), f"rebind.example:{port_of(base)}"
    wav = encode(voice(1.0), SAMPLE_RATE, "WAV", "PCM_16")
    r = httpx.post(f"{base}/predict", content=wav, headers={"content-type": "audio/wav", "host": evil,
                                                              "origin": f"http://{evil}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "forbidden_host"
    assert "SER_ALLOWED_HOSTS" in r.json()["error"]["message"]
    sock, head = handshake(port, host=evil, Origin=f"http://{evil}")
    with sock:
        while chunk := sock.recv(65536):
            head += chunk
    assert head.startswith(b"HTTP/1.1 400") and b'"forbidden_host"' in head, head
    # the names the page is reached by on loopback still work, and probes by IP are exempt
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST."):
        assert httpx.get(f"{base}/", headers={"host": host}).status_code == 200, host
    assert httpx.get(f"{base}/readyz", headers={"host": "10.1.2.3:8000"}).status_code == 200
    sock, head = handshake(port, host=f"localhost:{port}", Origin=f"http://localhost:{port}")
    sock.close()
    assert head.startswith(b"HTTP/1.1 101"), head
    assert 'ser_errors_total{code="forbidden_host"} 2.0' in httpx.get(f"{base}/metrics").text


def test_streams_per_client_when_capped_and_x_forwarded_for_is_not_believed(student_bundle):
    settings = {"SER_STREAM_MAX_PER_CLIENT": "2"}
    with running_server(student_bundle, None, settings=settings) as (base, _):
        async def run():
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(2):
                    await stack.enter_async_context(connect(ws_url(base), proxy=None))
                async with connect(ws_url(base), proxy=None,
                                   additional_headers={"X-Forwarded-For": "10.9.8.7"}) as third:
                    return await read_all(third), third.close_code
        events, code = asyncio.run(asyncio.wait_for(run(), 30))
    assert code == 1013 and events[0]["code"] == "streams_per_client" and "127.0.0.1" in events[0]["message"]


@pytest.mark.slow
def test_fast_teacher_streams_stay_within_the_memory_budget():
    """3 streams on model=teacher, hop 0.25 s, as fast as the server takes them, with the shipped
    models: before, RSS 534 -> 1,409 MB, past the 1 GB container limits. Then the same with 2
    model=auto streams and 4 clients posting minute-long clips to /predict/teacher beside them."""
    pcm = s16(voice(20.0, seed=1))
    minute = encode(voice(59.0, seed=2), SAMPLE_RATE, "WAV", "PCM_16")

    async def one(url):
        async with connect(url, proxy=None, compression=None) as ws:
            async def send():
                for i in range(0, len(pcm), 32_000):
                    await ws.send(pcm[i:i + 32_000])
                await ws.send('{"type": "end"}')
            sender = asyncio.create_task(send())
            events = await read_all(ws)
            sender.cancel()
            return events, ws.close_code

    async def post_teacher(client):
        r = await client.post("/predict/teacher", content=minute, headers={"content-type": "audio/wav"})
        return r.status_code

    async def load(base, auto: bool):
        urls = [ws_url(base, model="teacher", hop_s=0.25)] * 3 + [ws_url(base, model="auto", hop_s=0.25)] * 2 * auto
        async with httpx.AsyncClient(base_url=base, timeout=300) as client:
            posts = [post_teacher(client) for _ in range(4 * auto)]
            return await asyncio.gather(*[one(u) for u in urls], *posts)

    peaks = []
    with running_server(None, cwd=REPO, timeout_s=120) as (base, proc):
        before = rss_mb(proc.pid)
        for auto in (False, True):
            reset_peak(proc.pid)
            results = asyncio.run(asyncio.wait_for(load(base, auto), 600))
            peaks.append(peak_rss_mb(proc.pid))
            streams, posts = results[:3 + 2 * auto], results[3 + 2 * auto:]
            assert all(code == 1000 and events[-1]["windows"] == 57 for events, code in streams[:3])
            assert all(code == 1000 for _, code in streams) and set(posts) <= {200, 503}, posts
    print(f"teacher streams: idle RSS {before:.0f} MB, peak {peaks[0]:.0f} MB; "
          f"with auto streams and /predict/teacher: peak {peaks[1]:.0f} MB")
    assert peaks[0] - before < 300 and peaks[1] < 600, (before, peaks)


def test_a_models_batch_is_sized_from_the_memory_budget():
    """The shipped teacher's windows cost tens of MB each: 3 runs at once of its batch fit the budget."""
    from service.bundle import load_bundle
    from service.inference import MAX_BATCH, OnnxModel
    from service.memory import batch_for, window_bytes

    if not (REPO / "models" / "teacher" / "model.onnx").exists():
        pytest.skip("the shipped teacher is not in this checkout")
    teacher = OnnxModel(load_bundle(REPO / "models" / "teacher"))
    teacher.warm_up()
    per_window = window_bytes(teacher)
    assert per_window > 10 * 2**20, per_window
    batch = batch_for(per_window, budget_mb=192, runs=3)
    assert 1 <= batch < MAX_BATCH and 3 * batch * per_window <= 192 * 2**20
    assert batch_for(per_window, budget_mb=16, runs=3) == 1   # never less than one window
    assert batch_for(2**20, budget_mb=192, runs=3) == MAX_BATCH
