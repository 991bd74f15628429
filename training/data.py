"""Audio in memory for training: the service's front end, random crops, augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from service.audio import Windowing, fill, load_audio
from service.labels import LABELS
from training.degrade import CONDITIONS, degrade, noise
from training.rooms import reverberate, room_bank
from training.records import Utterance


UNLABELED = -100   # torch's cross-entropy ignore_index


def load_clips(records: list[Utterance], *, desc: str = "decode") -> list[np.ndarray]:
    """Each record's audio decoded by the service's own front end (mono, 16 kHz), untrimmed:
    each model trims it when its Windowing says so (a teacher and a student may differ)."""
    return [load_audio(r.path) for r in tqdm(records, desc=desc, unit="clip", leave=False)]


def class_weights(labels: list[str]) -> torch.Tensor:
    """Cross-entropy weights (C,) inversely proportional to each class's labeled examples,
    mean 1: every class counts the same in the loss, as it does in UA (RAVDESS has half as
    many neutral clips as each other class). A class without examples gets weight 0."""
    counts = np.array([sum(lab == c for lab in labels) for c in LABELS], dtype=np.float64)
    w = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(w * (counts > 0).sum() / w.sum(), dtype=torch.float32)


@dataclass
class Augment:
    gain_db: float = 6.0          # random gain +-; the model normalises, but real clipping/levels vary
    noise_snr_db: tuple[float, float] = (0.0, 20.0)   # pink noise at a random SNR ...
    noise_p: float = 0.3          # ... on this fraction of crops
    reverb_p: float = 0.3         # this fraction of crops is played in a simulated room (training.rooms)
    speed: float = 0.1            # resample by a factor in 1 +- this: pitch and tempo vary across speakers
    degrade_p: float = 0.0        # this fraction of crops goes through one random training.degrade
                                  # condition (telephone band, MP3, noise, reverb, gain): users' audio

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.degrade_p and rng.random() < self.degrade_p:
            x = degrade(x, str(rng.choice(sorted(CONDITIONS))), seed=int(rng.integers(2**31)))
        if self.reverb_p and rng.random() < self.reverb_p:
            rooms = room_bank()
            x = reverberate(x, rooms[int(rng.integers(len(rooms)))])
        if self.speed:
            factor = rng.uniform(1 - self.speed, 1 + self.speed)
            x = np.interp(np.arange(0, len(x) - 1, factor), np.arange(len(x)), x).astype(np.float32)
        x = x * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if rng.random() < self.noise_p:
            x = noise(x, rng, snr_db=rng.uniform(*self.noise_snr_db)).astype(np.float32)
        return x


def random_crop(x: np.ndarray, n: int, rng: np.random.Generator, pad: str = "zero") -> np.ndarray:
    """A random n-sample crop; a shorter clip is zero-padded at a random offset, or with
    pad="repeat" repeated from a random phase (as service.audio.fill does at phase 0)."""
    if len(x) >= n:
        s = int(rng.integers(0, len(x) - n + 1))
        return x[s:s + n]
    if pad == "repeat":
        phase = int(rng.integers(0, len(x)))
        return fill(x, n + len(x), pad)[phase:phase + n]
    out = np.zeros(n, dtype=np.float32)
    s = int(rng.integers(0, n - len(x) + 1))
    out[s:s + len(x)] = x
    return out


def augmented_crop(clip: np.ndarray, window: int, augment: Augment | None, rng: np.random.Generator,
                   pad: str = "zero") -> np.ndarray:
    """Augment the whole clip (speed perturbation changes its length), then crop `window` samples."""
    x = augment(clip, rng) if augment is not None else clip
    return np.ascontiguousarray(random_crop(x, window, rng, pad), dtype=np.float32)


def shorten(x: np.ndarray, rng: np.random.Generator, p: float, min_len: int, pad: str) -> np.ndarray:
    """With probability p, the window of a shorter clip as the service cuts it: a random span of
    min_len samples up to the window's length, filled back to the window as service.audio.fill fills
    it. Short clips then teach the model what they sound like, not what their fill looks like."""
    if not p or rng.random() >= p:
        return x
    n = int(rng.integers(min_len, len(x)))
    s = int(rng.integers(0, len(x) - n + 1))
    return fill(x[s:s + n], len(x), pad)


def targets(labels: list[str | None], soft: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(label indices, UNLABELED for None; soft targets per clip, zeros without a teacher)."""
    y = np.array([UNLABELED if lab is None else LABELS.index(lab) for lab in labels])
    return y, soft if soft is not None else np.zeros((len(labels), len(LABELS)), dtype=np.float32)


class CropDataset(Dataset):
    """(crop (S,), label index, soft target (C,) or zeros), with fresh random augmentation
    every epoch. A label None (an unlabeled clip) becomes UNLABELED: only its soft target teaches."""

    def __init__(self, clips: list[np.ndarray], labels: list[str | None], windowing: Windowing, *,
                 soft: np.ndarray | None = None, augment: Augment | None = None, seed: int = 0,
                 short: tuple[float, int] = (0.0, 0)):
        # crops as long as the model's windows, filled as they are; the clips come trimmed when it says so
        self.clips, self.window, self.pad = clips, windowing.samples, windowing.pad
        self.y, self.soft = targets(labels, soft)
        self.augment, self.seed, self.epoch, self.short = augment, seed, 0, short

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        x = augmented_crop(self.clips[i], self.window, self.augment, rng, self.pad)
        x = shorten(x, rng, *self.short, self.pad)
        return torch.from_numpy(x), int(self.y[i]), torch.from_numpy(self.soft[i])


class ViewDataset(Dataset):
    """CropDataset's items from cached views (training.views, one (k, S) file per clip): per
    epoch, each clip gives one of its k rendered views, drawn by (seed, epoch, clip), and is
    shortened as CropDataset's crops are (with `pad`, the fill the views were rendered with).
    `soft` is one target row per clip (N, D), or one per view (N, k, D)."""

    def __init__(self, files: list, labels: list[str | None], *, soft: np.ndarray | None = None, seed: int = 0,
                 short: tuple[float, int] = (0.0, 0), pad: str = "zero"):
        self.files, self.seed, self.epoch, self.short, self.pad = files, seed, 0, short, pad
        self.y, self.soft = targets(labels, soft)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        views = np.load(self.files[i], mmap_mode="r")
        rng = np.random.default_rng((self.seed, self.epoch, i))
        j = int(rng.integers(len(views)))
        x = shorten(views[j].astype(np.float32), rng, *self.short, self.pad)
        return torch.from_numpy(x), int(self.y[i]), torch.from_numpy(self.soft[i, j] if self.soft.ndim == 3 else self.soft[i])
