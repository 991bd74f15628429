"""`ser stream`: a file at real-time speed (or faster), or the microphone, to WebSocket /stream;
one line per event."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np

from service.audio import SAMPLE_RATE, load_audio

FRAME_S = 0.1   # audio per binary frame
MIC_EXTRA = "ser stream --mic needs the 'sounddevice' package and the PortAudio library: " \
            "pip install 'speech-emotion-distill[mic]' (Debian: apt-get install libportaudio2)"


def stream_url(base: str, **query) -> str:
    """http(s)://host[:port][/prefix] -> ws(s)://host[:port][/prefix]/stream?query."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/stream", urlencode(query), ""))


async def file_frames(audio: np.ndarray, speed: float) -> AsyncIterator[bytes]:
    """16 kHz audio as float32 frames of FRAME_S, each sent when its last sample would have
    been captured, sped up `speed` times (0: as fast as the server takes them)."""
    x = audio.astype("<f4")
    loop, step = asyncio.get_running_loop(), round(FRAME_S * SAMPLE_RATE)
    t0 = loop.time()
    for k, i in enumerate(range(0, len(x), step)):
        if speed > 0:
            await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S / speed - loop.time()))
        yield x[i:i + step].tobytes()


async def mic_frames(seconds: float | None) -> AsyncIterator[bytes]:
    """The default microphone as 16 kHz float32 frames, until `seconds` pass or Ctrl-C."""
    import sounddevice as sd   # optional: the caller turns its absence into MIC_EXTRA

    loop, frames = asyncio.get_running_loop(), asyncio.Queue()
    step = round(FRAME_S * SAMPLE_RATE)

    def captured(data: np.ndarray, n: int, t, status) -> None:   # on PortAudio's thread
        loop.call_soon_threadsafe(frames.put_nowait, data[:, 0].astype("<f4").tobytes())

    with sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=step, callback=captured):
        print(f"listening on {sd.query_devices(kind='input')['name']}; Ctrl-C to stop", file=sys.stderr)
        end = None if seconds is None else loop.time() + seconds
        try:
            while end is None or loop.time() < end:
                yield await frames.get()
        except asyncio.CancelledError:
            return


def describe(event: dict) -> str:
    """One line for people."""
    kind = event.get("type")
    if kind == "window":
        role = event["model"]["role"] + (" (fallback)" if event.get("fell_back") else "")
        heard = "no speech" if event.get("no_speech") else f"{event['label']:<8} {100 * event['confidence']:5.1f}%"
        return f"{event['start_s']:7.2f} - {event['end_s']:7.2f} s  {heard:<15}  {role}  lag {event['lag_ms']:.0f} ms"
    if kind == "summary":
        if not event["windows"]:
            return f"summary: {event['duration_s']:.2f} s, no window"
        heard = "no speech" if event.get("no_speech") else f"{event['label']} {100 * event['confidence']:.1f}%"
        return f"summary: {event['duration_s']:.2f} s, {event['windows']} windows: {heard}"
    return f"error {event.get('code')}: {event.get('message')}"


async def stream(url: str, frames: AsyncIterator[bytes], key: str | None, on_event) -> int:
    """Send the frames, then {"type": "end"}; call on_event(event) for each event; returns the close code."""
    import websockets
    from websockets.asyncio.client import connect

    headers = {"X-API-Key": key} if key else None
    async with connect(url, additional_headers=headers, compression=None, open_timeout=30) as ws:
        async def send() -> None:
            try:
                async for f in frames:
                    await ws.send(f)
                await ws.send(json.dumps({"type": "end"}))
            except websockets.ConnectionClosed:
                pass   # the server ended the stream; its events say why
            except BaseException:   # the microphone failed, or Ctrl-C: end the stream, then report it
                await ws.close()
                raise

        sender = asyncio.create_task(send())
        try:
            async for message in ws:
                on_event(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        finally:
            sender.cancel()
        if sender.done() and not sender.cancelled() and sender.exception():
            raise sender.exception()
        return ws.close_code or 1006


def run(args: argparse.Namespace) -> int:
    import websockets

    if args.mic:
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError):   # OSError: the package is there, the PortAudio library is not
            print(f"ser stream: error: {MIC_EXTRA}", file=sys.stderr)
            return 2
        frames = mic_frames(args.seconds)
    elif args.file is None:
        print("ser stream: error: give an audio FILE or --mic", file=sys.stderr)
        return 2
    else:
        frames = file_frames(load_audio(args.file), args.speed)   # a file that cannot be read fails here
    url = stream_url(args.url, model=args.model, hop_s=args.hop, top_k=args.top_k, sample_rate=SAMPLE_RATE,
                     encoding="pcm_f32le", **({"labels": args.labels} if args.labels else {}))

    def show(event: dict) -> None:
        print(json.dumps(event) if args.json else describe(event), flush=True)

    try:
        code = asyncio.run(stream(url, frames, args.api_key or os.environ.get("SER_API_KEY"), show))
    except KeyboardInterrupt:
        return 130
    except websockets.InvalidStatus as e:
        print(f"ser stream: error: {url}: the server answered HTTP {e.response.status_code}, not a WebSocket "
              "(is it a speech-emotion-distill server with /stream?)", file=sys.stderr)
        return 2
    except ConnectionError as e:
        print(f"ser stream: error: could not connect to {args.url} ({e})", file=sys.stderr)
        return 2
    except websockets.WebSocketException as e:
        print(f"ser stream: error: {url}: {e}", file=sys.stderr)
        return 2
    return 0 if code == 1000 else 1

