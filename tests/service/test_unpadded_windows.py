"""Pad mode "none": no window holds audio that is not in the clip."""

from __future__ import annotations

import numpy as np

from service.audio import Windowing

SR = 16_000


def test_a_short_clip_is_one_window_of_its_own_length():
    x = np.arange(2 * SR, dtype=np.float32)
    windows, starts = Windowing(6.0, 3.0, pad="none").windows(x)
    assert windows.shape == (1, 2 * SR) and np.array_equal(windows[0], x) and list(starts) == [0.0]


def test_the_last_window_of_a_long_clip_ends_with_the_audio():
    x = np.arange(10 * SR, dtype=np.float32)
    windows, starts = Windowing(6.0, 3.0, pad="none").windows(x)
    assert windows.shape == (3, 6 * SR) and list(starts) == [0.0, 3.0, 4.0]
    assert np.array_equal(windows[-1], x[-6 * SR:])
