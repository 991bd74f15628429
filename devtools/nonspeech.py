"""A fixed set of audio that holds no speech, generated from one seed: what the speech gate
must refuse (docs/speech-gate.md). Every clip is written as 16-bit WAV at its rate, so it
reaches the gate through the real decoder and resampler."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from devtools.audio import encode

SEED = 35
DURATIONS_S = (1.0, 3.0, 10.0)
RATES = (16_000, 48_000)
NOISE_DBFS = (-20.0, -30.0, -40.0)
TONES_HZ = (100.0, 200.0, 440.0, 1000.0, 2000.0, 4000.0)
DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336),
        "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209),
        "0": (941, 1336), "#": (941, 1477)}
CHORDS_HZ = {"C major": (261.63, 329.63, 392.00), "A minor": (220.00, 261.63, 329.63),
             "G major": (196.00, 246.94, 293.66)}


@dataclass(frozen=True)
class Clip:
    name: str
    sample_rate: int
    wav: bytes


def _dbfs(x: np.ndarray, level_db: float) -> np.ndarray:
    """`x` scaled to an RMS level of `level_db` dBFS (0 dBFS: an RMS of 1, full scale)."""
    return x * (10 ** (level_db / 20) / np.sqrt(np.mean(x ** 2)))


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum))
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _tones(freqs, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)


def _signals(n: int, sr: int, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    t = np.arange(n) / sr
    yield "silence", np.zeros(n)
    for db in NOISE_DBFS:
        yield f"white {db:g} dBFS", _dbfs(rng.standard_normal(n), db)
        yield f"pink {db:g} dBFS", _dbfs(_pink(n, rng), db)
    for f in TONES_HZ:
        yield f"tone {f:g} Hz", _dbfs(_tones([f], t, rng), rng.uniform(-30, -6))   # a level drawn per clip
    for digit, pair in DTMF.items():
        # A key held down in bursts of 100 ms on, 100 ms off: how a phone dials it.
        on = (t % 0.2) < 0.1
        yield f"DTMF {digit}", _dbfs(_tones(pair, t, rng), rng.uniform(-30, -6)) * on
    for name, notes in CHORDS_HZ.items():
        yield f"chord {name}", _dbfs(_tones(notes, t, rng), rng.uniform(-30, -6))


def nonspeech_clips() -> list[Clip]:
    """Every kind of non-speech at every length and rate: the same clips on every call."""
    rng = np.random.default_rng(SEED)
    clips = []
    for sr in RATES:
        for seconds in DURATIONS_S:
            for name, x in _signals(round(seconds * sr), sr, rng):
                clips.append(Clip(f"{name}, {seconds:g} s, {sr // 1000} kHz", sr,
                                  encode(np.clip(x, -1, 1).astype(np.float32), sr, "WAV", "PCM_16")))
    return clips
