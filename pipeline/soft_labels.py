"""The distilled student's soft labels: teacher logits per training clip, cached on disk.

Three sources (PipelineConfig.final_soft_labels, for the models trained on every speaker):
- "teacher": the teacher trained on the same speakers as the student (every fold does this).
- "oof": out of fold. Each clip gets the logits of the k-fold teacher whose test fold holds its
  speaker, i.e. the one teacher that never heard that voice: its labels are as right or wrong
  as the teacher is on new speakers, not as on the clips it was trained on.
- "ensemble": the mean of the k fold teachers' logits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from service.audio import SAMPLE_RATE, windows_for
from training.data import Augment, augmented_crop, view_rng
from training.records import Utterance
from training.splits import read_split
from training.train_student import StudentConfig

SOURCES = ("teacher", "oof", "ensemble")


def checkpoint_sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.json")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def teacher_logits(teacher_dir: Path, records: list[Utterance], clips: list[np.ndarray], cache: Path,
                   cfg: StudentConfig) -> np.ndarray:
    """(N, C) teacher logits per training clip, or (N, V, C) with V = cfg.kd_views fixed
    augmented crops per clip.

    Per clip (kd_views 0): the mean over the clip's windows as the teacher itself serves them
    (its window and padding, from its training config). Per view: the exact crops the student
    will see (training.data.view_rng), so a soft label always describes the audio it is paired
    with. Cached on disk under the teacher's checksum and the recipe, keyed by example id:
    computed once, reused by every student and every resumed run."""
    from training.teacher import load_teacher
    from training.train_teacher import served_window

    served = served_window(teacher_dir)
    window = round(cfg.window_s * SAMPLE_RATE)
    recipe = (f"w{window}-{cfg.pad}-v{cfg.kd_views}-s{cfg.seed}" if cfg.kd_views
              else f"clip-{served['window_s']}-{served['hop_s']}-{served['pad']}")
    path = cache / f"{checkpoint_sha(teacher_dir)}-{recipe}.npz"
    stored = dict(np.load(path)) if path.exists() else {}
    missing = [(r, x) for r, x in zip(records, clips) if r.id not in stored]
    if missing:
        teacher, augment = load_teacher(teacher_dir).eval(), Augment()
        for r, x in tqdm(missing, desc="teacher logits", unit="clip", leave=False):
            if cfg.kd_views:
                views = np.stack([augmented_crop(x, window, augment, view_rng(cfg.seed, r.id, v), cfg.pad)
                                  for v in range(cfg.kd_views)])
                stored[r.id] = teacher(torch.from_numpy(views)).numpy()              # (V, C)
            else:
                windows, _ = windows_for(x, served["window_s"], served["hop_s"], trim=False, pad=served["pad"])
                stored[r.id] = teacher(torch.from_numpy(windows)).mean(dim=0).numpy()  # (C,)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **stored)
    return np.stack([stored[r.id] for r in records]).astype(np.float32)


def fold_soft_labels(fold: Path, records: list[Utterance], clips: list[np.ndarray], cfg: StudentConfig) -> np.ndarray:
    """The logits of the teacher trained in `fold`, cached in that fold's teacher_logits/."""
    return teacher_logits(fold / "teacher" / "best", records, clips, fold / "teacher_logits", cfg)


def soft_labels(fold: Path, source: str, k: int, records: list[Utterance], clips: list[np.ndarray],
                cfg: StudentConfig) -> np.ndarray:
    """Soft labels (in the order of `records`) for a student trained in `fold`, a fold or the
    final/ folder of a run of k folds, from `source` (one of SOURCES)."""
    if source == "teacher":
        return fold_soft_labels(fold, records, clips, cfg)
    if source not in SOURCES:
        raise ValueError(f"soft labels {source!r}; expected one of {SOURCES}")
    teachers = fold_teachers(fold.parent, k)
    if source == "ensemble":
        return np.mean([fold_soft_labels(f, records, clips, cfg) for f, _ in teachers], axis=0)
    out: list[np.ndarray | None] = [None] * len(records)
    for f, test in teachers:
        mine = [i for i, r in enumerate(records) if r.speaker in test]
        if mine:
            got = fold_soft_labels(f, [records[i] for i in mine], [clips[i] for i in mine], cfg)
            for i, row in zip(mine, got):
                out[i] = row
    unheard = sorted({r.speaker for r, x in zip(records, out) if x is None})
    if unheard:
        raise ValueError(f"speakers in no fold's test set, so without an out-of-fold teacher: {unheard}")
    return np.stack(out)


def fold_teachers(run: Path, k: int) -> list[tuple[Path, frozenset[str]]]:
    """(fold folder, test speakers) of each of the k folds of `run`; every fold must have
    finished its teacher."""
    folds = [run / f"fold{i}" for i in range(k)]
    missing = [f.name for f in folds if not (f / "teacher" / "COMPLETE").exists()]
    if missing:
        raise ValueError(f"out-of-fold and ensemble soft labels need the teachers of all {k} folds; "
                         f"{', '.join(missing)} has none (run the pipeline without --run-folds)")
    return [(f, frozenset(read_split(f / "split.json").test)) for f in folds]
