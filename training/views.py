"""Augmented training views rendered once and cached on disk.

An epoch of the student used to augment every clip afresh in Python (speed perturbation, a
degradation, a simulated room, noise) before its forward pass (experiments/epoch_profile.py).
Here every clip gets `k` fixed views (augmented, then cropped to the window exactly as
training.data.augmented_crop does), rendered once into a float16 file per clip; an epoch then
reads one view per clip. The folder is keyed by what makes a view (window, trim, pad,
augmentation settings, seed, k) and a file by the clip's id, so every fold and recipe that trains on a clip
with the same augmentation shares its views, and an interrupted rendering resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.audio import Windowing
from training.data import Augment, augmented_crop

META_FILE = "views.json"


def views_folder(root: Path, windowing: Windowing, augment: Augment | None, seed: int, k: int) -> Path:
    # the clips come trimmed or not as the windowing says, so trim_silence is part of what makes a view
    what = {"window_s": windowing.window_s, "trim_silence": windowing.trim_silence, "pad": windowing.pad,
            "augment": asdict(augment) if augment else None, "seed": seed, "k": k}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(root) / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).write_text(json.dumps(what, indent=1))
    return folder


def view_file(folder: Path, clip_id: str) -> Path:
    return folder / f"{hashlib.sha256(clip_id.encode()).hexdigest()[:24]}.npy"


def render_views(clips: list[np.ndarray], ids: list[str], windowing: Windowing, augment: Augment | None,
                 seed: int, k: int, root: Path) -> list[Path]:
    """The (k, S) float16 view file of every clip (already trimmed when `windowing` says so),
    rendered where missing. View j of a clip is the same audio in every run (its random draws
    are seeded by (seed, the clip's id, j))."""
    folder = views_folder(root, windowing, augment, seed, k)
    s, pad = windowing.samples, windowing.pad
    paths = [view_file(folder, i) for i in ids]
    missing = [n for n, p in enumerate(paths) if not p.is_file()]
    for n in tqdm(missing, desc="render views", unit="clip", leave=False):
        tag = zlib.crc32(ids[n].encode())
        views = np.stack([augmented_crop(clips[n], s, augment, np.random.default_rng((seed, tag, j)), pad)
                          for j in range(k)]).astype(np.float16)   # float16: half the disk; the graph normalises
        tmp = paths[n].with_suffix(".tmp.npy")
        np.save(tmp, views)
        tmp.replace(paths[n])   # a file is complete or absent
    return paths


def teacher_inputs(stored: np.ndarray, clip: np.ndarray, clip_id: str, augment: Augment | None,
                   seed: int, pad: str) -> list[np.ndarray]:
    """What a teacher hears of each stored (k, S) view of a clip (`render_views`' clip, trimmed):
    the view itself, or, where the augmented clip was shorter than the window and the view holds it
    zero-padded or repeated from a random phase, that clip once, in order (a teacher's window pads
    nothing). Its length, offset and phase come from replaying the view's random draws
    (training.data.random_crop); the audio is the stored view's."""
    tag, samples, out = zlib.crc32(clip_id.encode()), stored.shape[1], []
    for j, view in enumerate(stored.astype(np.float32)):
        rng = np.random.default_rng((seed, tag, j))
        n = len(augment(clip, rng)) if augment is not None else len(clip)
        if n >= samples:
            out.append(view)
            continue
        if pad != "repeat":
            start = int(rng.integers(0, samples - n + 1))
            out.append(view[start:start + n])
            continue
        phase = int(rng.integers(0, n))
        if not np.array_equal(view[n:], view[:samples - n]):   # a clip repeated has period n
            raise ValueError(f"view {j} of {clip_id} does not repeat every {n} samples: it was rendered otherwise")
        out.append(view[(np.arange(n) - phase) % n])
    return out
