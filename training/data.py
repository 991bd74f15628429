"""Audio in memory for training: the service's front end, random crops, augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from service.audio import SAMPLE_RATE, load_audio, trim_silence
from service.labels import LABELS
from training.records import Utterance


def load_clips(records: list[Utterance], *, trim: bool, desc: str = "decode") -> list[np.ndarray]:
    """Each record's audio through the service's own front end (decode, mono, 16 kHz, trim)."""
    clips = []
    for r in tqdm(records, desc=desc, unit="clip", leave=False):
        x = load_audio(r.path)
        clips.append(trim_silence(x) if trim else x)
    return clips


@dataclass
class Augment:
    gain_db: float = 6.0          # random gain +-; the model normalises, but real clipping/levels vary
    noise_snr_db: tuple[float, float] = (10.0, 40.0)   # white noise at a random SNR ...
    noise_p: float = 0.5          # ... on this fraction of crops
    speed: float = 0.1            # resample by a factor in 1 +- this: pitch and tempo vary across speakers

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.speed:
            factor = rng.uniform(1 - self.speed, 1 + self.speed)
            x = np.interp(np.arange(0, len(x) - 1, factor), np.arange(len(x)), x).astype(np.float32)
        x = x * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if rng.random() < self.noise_p:
            power = float(np.mean(x ** 2)) + 1e-10
            snr = rng.uniform(*self.noise_snr_db)
            x = x + rng.standard_normal(len(x)).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
        return x


def random_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample crop; a shorter clip is zero-padded at a random offset."""
    if len(x) >= n:
        s = int(rng.integers(0, len(x) - n + 1))
        return x[s:s + n]
    out = np.zeros(n, dtype=np.float32)
    s = int(rng.integers(0, n - len(x) + 1))
    out[s:s + len(x)] = x
    return out


class CropDataset(Dataset):
    """(crop (S,), label index, soft target (C,) or zeros) with fresh randomness each epoch."""

    def __init__(self, clips: list[np.ndarray], labels: list[str], window_s: float, *,
                 soft: np.ndarray | None = None, augment: Augment | None = None, seed: int = 0):
        self.clips, self.window = clips, round(window_s * SAMPLE_RATE)
        self.y = np.array([LABELS.index(lab) for lab in labels])
        self.soft = soft if soft is not None else np.zeros((len(clips), len(LABELS)), dtype=np.float32)
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        x = self.clips[i]
        if self.augment is not None:
            x = self.augment(x, rng)   # on the whole clip: speed perturbation changes its length
        x = random_crop(x, self.window, rng)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self.y[i]), torch.from_numpy(self.soft[i])
