"""Degraded copies of 16 kHz audio: how users' audio differs from studio recordings.

Each condition maps (samples,) float32 at 16 kHz to the same, deterministically for a seed, so
an evaluation under degradation is repeatable. Used to score models on the test speakers
(`training.robustness`) and to augment training crops (`training.data.Augment.degrade_p`).
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from service.audio import SAMPLE_RATE
from training.rooms import reverberate, room_bank

MP3_LEVEL = 0.85      # libsndfile compression level that gives 32 kbit/s CBR for 16 kHz mono
SNR_DB = 10.0
RT60_S = 0.5          # reverberation time of the simulated rooms
EVAL_ROOMS = 16       # rooms the evaluation draws from (a bank apart from training's, by its seed)
EVAL_ROOM_SEED = 1000


def telephone(x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Narrow-band telephone: 8 kHz sampling and the 300-3400 Hz band of the G.712 channel,
    then back to 16 kHz."""
    narrow = soxr.resample(x, SAMPLE_RATE, 8000, quality="HQ")
    spectrum = np.fft.rfft(narrow)
    f = np.fft.rfftfreq(len(narrow), 1 / 8000)
    spectrum[(f < 300) | (f > 3400)] = 0
    return soxr.resample(np.fft.irfft(spectrum, n=len(narrow)), 8000, SAMPLE_RATE, quality="HQ")[: len(x)]


def mp3(x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """MP3 at 32 kbit/s (libsndfile's LAME encoder and mpg123 decoder), decoded back."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1, 1), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III",
             bitrate_mode="CONSTANT", compression_level=MP3_LEVEL)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = y[: len(x)]           # the decoder adds encoder delay/padding at the end
    return np.pad(y, (0, len(x) - len(y)))


def noise(x: np.ndarray, rng: np.random.Generator, snr_db: float = SNR_DB) -> np.ndarray:
    """Additive pink noise (white noise shaped to a 1/f power spectrum) at `snr_db` below the
    speech's mean power."""
    white = np.fft.rfft(rng.standard_normal(len(x)))
    f = np.arange(len(white)) + 1.0
    n = np.fft.irfft(white / np.sqrt(f), n=len(x))
    p_x, p_n = np.mean(x.astype(np.float64) ** 2) + 1e-12, np.mean(n ** 2) + 1e-12
    return x + n * np.sqrt(p_x / p_n / 10 ** (snr_db / 10))


def reverb(x: np.ndarray, rng: np.random.Generator, rt60_s: float = RT60_S) -> np.ndarray:
    """`x` in a simulated room with a reverberation time of `rt60_s`: one of EVAL_ROOMS rooms
    (training.rooms: random shoebox rooms, sources and microphones), drawn by the seed."""
    bank = room_bank(seed=EVAL_ROOM_SEED, size=EVAL_ROOMS, rt60_s=rt60_s)
    return reverberate(x, bank[int(rng.integers(len(bank)))])


def gain(db: float):
    """Level change by `db`, clipped to [-1, 1] as a real recording chain would."""
    def apply(x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.clip(x * 10 ** (db / 20), -1.0, 1.0)
    return apply


CONDITIONS = {"telephone_8k": telephone, "mp3_32k": mp3, "noise_10db": noise, "reverb": reverb,
              "gain_+10db": gain(10.0), "gain_-10db": gain(-10.0)}


def degrade(x: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """`x` under `condition` (a CONDITIONS key), float32; the same seed gives the same audio."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown degradation {condition!r}; expected one of {sorted(CONDITIONS)}")
    y = CONDITIONS[condition](np.asarray(x, np.float32), np.random.default_rng(seed))
    return np.asarray(y, dtype=np.float32)
