"""Degradations used to score models on users' audio: each does what its name says."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from devtools.audio import voice
from training.degrade import CONDITIONS, MP3_LEVEL, degrade

SR = 16_000


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_every_condition_keeps_length_and_is_repeatable(condition):
    x = voice(1.5, seed=1)
    y = degrade(x, condition, seed=3)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.array_equal(y, degrade(x, condition, seed=3))
    assert not np.allclose(y, x, atol=1e-4)


def test_telephone_keeps_only_the_telephone_band():
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    y = degrade(x, "telephone_8k", seed=0)
    assert band_energy(y, 4100, 8000) < 1e-3 and band_energy(y, 0, 250) < 1e-3
    assert band_energy(y, 300, 3400) > 0.95


def test_mp3_is_32_kbit_s():
    x = voice(4.0, seed=2)
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT", compression_level=MP3_LEVEL)
    assert len(buf.getvalue()) * 8 / 4.0 == pytest.approx(32_000, rel=0.05)


def test_noise_is_10_db_below_the_speech():
    x = voice(2.0, seed=4)
    n = degrade(x, "noise_10db", seed=1) - x
    assert 10 * np.log10(np.mean(x ** 2) / np.mean(n ** 2)) == pytest.approx(10.0, abs=0.1)


def test_gain_clips_like_a_recording_chain():
    x = voice(1.0, seed=5)
    up, down = degrade(x, "gain_+10db", seed=0), degrade(x, "gain_-10db", seed=0)
    assert np.abs(up).max() <= 1.0
    assert np.allclose(down, x * 10 ** (-0.5), atol=1e-6)


def test_reverb_smears_energy_in_time_and_keeps_the_peak():
    x = np.zeros(SR, np.float32)
    x[1000] = 0.5
    y = degrade(x, "reverb", seed=0)
    assert np.abs(y).max() == pytest.approx(0.5, rel=1e-5)
    assert np.count_nonzero(np.abs(y[1001:]) > 1e-3) > 1000


def test_unknown_condition_is_refused():
    with pytest.raises(ValueError, match="unknown degradation 'vinyl'"):
        degrade(voice(0.5), "vinyl", seed=0)


def test_simulated_rooms_reverberate_for_about_their_rt60():
    from training.rooms import room_bank, room_impulse_response

    rir = room_impulse_response(np.random.default_rng(0), rt60_s=0.6)
    energy = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]   # Schroeder decay curve
    decay_db = 10 * np.log10(energy / energy[0])
    t20 = np.argmax(decay_db < -25) - np.argmax(decay_db < -5)   # -5 to -25 dB, x3 for RT60
    assert 0.3 < 3 * t20 / 16_000 < 1.2
    assert room_bank(seed=3, size=2) == room_bank(seed=3, size=2)   # made once per seed
