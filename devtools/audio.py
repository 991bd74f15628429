"""Generated audio: a speech-like voice in any format libsndfile writes, and hand-made files
whose headers lie."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf


def voice(seconds: float = 1.0, sr: int = 16_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like signal: a gliding harmonic tone with a syllable-rate envelope.
    Returns (N,) for mono, (N, channels) otherwise, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    x = 0.25 * x / np.abs(x).max() + 0.002 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)


def encode(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_bytes(seconds: float = 1.0, sr: int = 16_000, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    return encode(voice(seconds, sr, channels), sr, "WAV", subtype)


def silence_file(seconds: float, sr: int, channels: int, fmt: str, subtype: str | None = None) -> bytes:
    """Long silence, written 1 s at a time (libsndfile's Vorbis encoder crashes on huge writes)."""
    buf, block = io.BytesIO(), np.zeros((sr, channels), np.float32)
    with sf.SoundFile(buf, "w", sr, channels, format=fmt, subtype=subtype) as f:
        for _ in range(int(seconds)):
            f.write(block)
    return buf.getvalue()


def wav_header(sr: int = 16_000, channels: int = 1, bits: int = 16, data_size: int | None = None,
               data: bytes = b"\0" * 3200, fmt_code: int = 1, extra_chunk: bytes = b"") -> bytes:
    """A hand-made RIFF/WAVE file whose header fields may lie about its data."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_code, channels, sr, sr * block, block, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunk + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def float_wav_with(value: float, subtype: str = "FLOAT") -> bytes:
    x = voice(1.0)
    x[1000:1010] = value
    return encode(x, 16_000, "WAV", subtype)


def flac_total_samples(data: bytes, n: int) -> bytes:
    """Rewrite the total-samples field of a FLAC STREAMINFO block (0 means unknown)."""
    d = bytearray(data)
    d[21] = (d[21] & 0xF0) | ((n >> 32) & 0x0F)
    d[22:26] = (n & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(d)
