"""Live streams on WebSocket /stream: how many real-time streams the service holds, and what
they cost `/predict`.

    python -m benchmarks.stream held  [--streams 100] [--seconds 20] [--hop 0.5]
    python -m benchmarks.stream share [--streams 20] [--seconds 6] [--rounds 3] [--connections 4]

Both start `ser serve` on 127.0.0.1 with the shipped models (SER_MAX_STREAMS raised to fit)
and stop it afterwards. Every stream sends real speech (a RAVDESS clip, looped; generated
speech-like audio without the corpus) as 16 kHz 16-bit PCM in 100 ms frames at real-time
speed, with `model=student`, and starts at a random moment of the first second, as
independent clients do.

`held`: N streams at once for --seconds of audio each. A stream is held when it closed
normally with every window the audio has (none dropped). Lag is the server's `lag_ms` (arrival
of a window's last sample to sending its event) and, from the client, the time from sending the
frame that completes a window to receiving its event; first event is the time from the first
sample (a frame is sent when its last sample would have been captured) to the first event
received, less the window.

`share`: `/predict?model=student` throughput (the 3 s WAV of benchmarks/load.py, closed loop
over keep-alive connections) with no stream and with N streams running, interleaved round by
round in one run; the ratio of the median rounds is what N streams cost /predict.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.load import load, multipart_request, run_mode, serving, three_second_wav
from devtools.data import RAVDESS_CLIP as CLIP
from devtools.process import cpu_s
from devtools.server import ser_serve
from service.audio import SAMPLE_RATE, load_audio, window_starts

FRAME_S = 0.1
WINDOW_S = 3.0   # the shipped student's window


def speech(seconds: float) -> bytes:
    """`seconds` of 16 kHz 16-bit PCM: the clip looped."""
    if CLIP.exists():
        x = load_audio(CLIP)
    else:
        t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
        x = (0.2 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(8 * np.pi * t))).astype(np.float32)
    x = np.resize(x, int(seconds * SAMPLE_RATE))
    return (np.clip(x, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


@dataclass
class StreamResult:
    close_code: int = 0
    windows: int = 0
    expected: int = 0
    server_lag_ms: list[float] = field(default_factory=list)
    client_lag_ms: list[float] = field(default_factory=list)
    first_event_s: float | None = None
    error: str | None = None


async def one_stream(url: str, pcm: bytes, hop_s: float, delay_s: float, speed: float = 1.0) -> StreamResult:
    import websockets
    from websockets.asyncio.client import connect

    r = StreamResult()
    win, hop, frame = round(WINDOW_S * SAMPLE_RATE), round(hop_s * SAMPLE_RATE), round(FRAME_S * SAMPLE_RATE)
    n = len(pcm) // 2
    r.expected = len(window_starts(n, win, hop))
    await asyncio.sleep(delay_s)
    sent_at: dict[int, float] = {}   # 16 kHz sample count after a frame -> when it was sent
    try:
        async with connect(f"{url}/stream?model=student&hop_s={hop_s}", proxy=None, compression=None,
                           open_timeout=30, ping_interval=None) as ws:
            t0 = time.monotonic()   # the first sample, as a microphone would capture it

            async def send():   # each frame as soon as its last sample would be captured
                for k, i in enumerate(range(0, n, frame)):
                    await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S / speed - time.monotonic()))
                    await ws.send(pcm[2 * i:2 * (i + frame)])
                    sent_at[min(n, i + frame)] = time.monotonic()
                await ws.send(json.dumps({"type": "end"}))
            sender = asyncio.create_task(send())
            first = None
            try:
                async for m in ws:
                    now, e = time.monotonic(), json.loads(m)
                    if e["type"] == "window":
                        r.windows += 1
                        r.server_lag_ms.append(e["lag_ms"])
                        end = round(e["end_s"] * SAMPLE_RATE)
                        done = min((c for c in sent_at if c >= end), default=None)
                        if done is not None and end - e["start_s"] * SAMPLE_RATE >= win - 1:   # whole windows
                            r.client_lag_ms.append((now - sent_at[done]) * 1000)
                        if first is None:
                            first = now
                            r.first_event_s = now - t0 - WINDOW_S
                    elif e["type"] == "error":
                        r.error = e["code"]
            except websockets.ConnectionClosed:
                pass
            sender.cancel()
            r.close_code = ws.close_code or 0
    except (OSError, websockets.WebSocketException) as e:
        r.error = type(e).__name__
    return r


async def many_streams(url: str, count: int, seconds: float, hop_s: float) -> list[StreamResult]:
    pcm = speech(seconds)
    rng = random.Random(0)
    return await asyncio.gather(*[one_stream(url, pcm, hop_s, rng.random()) for _ in range(count)])


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def held(args) -> dict:
    port = args.port
    with serving(ser_serve(port, 1), port, {"SER_MAX_STREAMS": str(args.streams + 10)}) as proc:
        asyncio.run(many_streams(f"ws://127.0.0.1:{port}", 2, 4.0, args.hop))   # warm-up
        t0, server0, client0 = time.monotonic(), cpu_s(proc.pid), cpu_s()
        results = asyncio.run(many_streams(f"ws://127.0.0.1:{port}", args.streams, args.seconds, args.hop))
        wall = time.monotonic() - t0
        server_cpu, client_cpu = cpu_s(proc.pid) - server0, cpu_s() - client0
        load = os.getloadavg()[0]
    server = [x for r in results for x in r.server_lag_ms]
    client = [x for r in results for x in r.client_lag_ms]
    first = [r.first_event_s * 1000 for r in results if r.first_event_s is not None]
    row = {
        "streams": args.streams, "seconds": args.seconds, "hop_s": args.hop, "wall_s": round(wall, 1),
        "held": sum(r.close_code == 1000 and r.windows == r.expected for r in results),
        "windows": sum(r.windows for r in results), "expected": sum(r.expected for r in results),
        "dropped": sum(max(0, r.expected - r.windows) for r in results),
        "errors": sorted({r.error for r in results if r.error}),
        "server_lag_p50_ms": pct(server, 50), "server_lag_p99_ms": pct(server, 99), "server_lag_max_ms": pct(server, 100),
        "client_lag_p50_ms": pct(client, 50), "client_lag_p99_ms": pct(client, 99),
        "first_event_after_window_p50_ms": pct(first, 50), "first_event_after_window_max_ms": pct(first, 100),
        "server_cpu_pct_of_a_core": round(100 * server_cpu / wall, 1),
        "client_cpu_pct_of_a_core": round(100 * client_cpu / wall, 1), "load_average_1m": round(load, 1),
    }
    print(json.dumps(row))
    return row


def share(args) -> dict:
    port = args.port
    request = multipart_request("/predict?model=student", port, three_second_wav())
    alone, beside, streamed = [], [], []
    with serving(ser_serve(port, 1), port, {"SER_MAX_STREAMS": str(args.streams + 10)}):
        load(port, request, 1, 1.0)   # warm-up
        for _ in range(args.rounds):
            alone.append(load(port, request, args.connections, args.seconds).row()["ok_per_s"])
            results: list = []
            streams = threading.Thread(target=lambda: results.extend(asyncio.run(
                many_streams(f"ws://127.0.0.1:{port}", args.streams, args.seconds + 5, 0.5))))
            streams.start()
            time.sleep(4.0)   # every stream started and past its first window
            beside.append(load(port, request, args.connections, args.seconds).row()["ok_per_s"])
            streams.join()
            streamed.append(sum(r.close_code == 1000 and r.windows == r.expected for r in results))
    row = {"streams": args.streams, "connections": args.connections, "seconds": args.seconds,
           "predict_per_s_alone": alone, "predict_per_s_with_streams": beside, "streams_held": streamed,
           "ratio_of_medians": round(float(np.median(beside) / np.median(alone)), 3)}
    print(json.dumps(row))
    return row


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name, fn, streams, seconds in [("held", held, 100, 20.0), ("share", share, 20, 6.0)]:
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--port", type=int, default=18_600)
        p.add_argument("--streams", type=int, default=streams)
        p.add_argument("--seconds", type=float, default=seconds)
        p.add_argument("--out", type=Path, help="also write the results here as JSON")
    sub.choices["held"].add_argument("--hop", type=float, default=0.5)
    sub.choices["share"].add_argument("--rounds", type=int, default=3)
    sub.choices["share"].add_argument("--connections", type=int, default=4)
    run_mode(ap)


if __name__ == "__main__":
    main()
