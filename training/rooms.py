"""Room reverberation from simulated impulse responses (pyroomacoustics).

A shoebox room of random size, with walls whose absorption gives a target RT60 (Sabine's
formula), a source and a microphone at random places: the image-source method for the early
reflections, ray tracing for the late tail (pyroomacoustics' hybrid simulator). Simulating a
room costs ~0.15 s, so training draws from a bank of rooms made once per process.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from service.audio import SAMPLE_RATE

RT60_RANGE_S = (0.2, 1.0)     # living room to lecture hall
ROOM_MIN_M = (3.0, 3.0, 2.4)
ROOM_MAX_M = (10.0, 8.0, 4.0)
WALL_MARGIN_M = 0.5
BANK_SIZE = 64


def room_impulse_response(rng: np.random.Generator, rt60_s: float | None = None) -> np.ndarray:
    """The impulse response from a random source to a random microphone in a random room whose
    reverberation time is `rt60_s` (drawn from RT60_RANGE_S when None); float32, peak 1."""
    import pyroomacoustics as pra

    rt60 = rng.uniform(*RT60_RANGE_S) if rt60_s is None else rt60_s
    dims = rng.uniform(ROOM_MIN_M, ROOM_MAX_M)
    absorption, _ = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=3,
                       ray_tracing=True, air_absorption=True)
    room.set_ray_tracing(receiver_radius=0.5, n_rays=2000, energy_thres=1e-5)
    room.add_source(rng.uniform(WALL_MARGIN_M, dims - WALL_MARGIN_M))
    room.add_microphone(rng.uniform(WALL_MARGIN_M, dims - WALL_MARGIN_M))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return (rir / np.abs(rir).max()).astype(np.float32)


@lru_cache(maxsize=4)
def room_bank(seed: int = 0, size: int = BANK_SIZE, rt60_s: float | None = None) -> tuple[np.ndarray, ...]:
    """`size` impulse responses (RT60 `rt60_s`, or spread over RT60_RANGE_S), the same for a seed."""
    rng = np.random.default_rng(seed)
    return tuple(room_impulse_response(rng, rt60_s) for _ in range(size))


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """`x` played in the room of `rir`, the same length, scaled to the input's peak."""
    from scipy.signal import fftconvolve

    y = fftconvolve(x.astype(np.float64), rir)[: len(x)]
    return (y * (np.abs(x).max() / max(np.abs(y).max(), 1e-9))).astype(np.float32)
