"""The pipeline's teacher stage and the soft labels it gives the distilled student.

Two teacher recipes (PipelineConfig.teacher_kind):
- "frozen" (the default): a frozen encoder with learned layer weights over mean+std pooled
  layers and a small head (training.frozen_teacher). The encoder's statistics are computed once
  per clip for the whole run (RUN/encoder_stats/), so a fold's teacher trains in seconds.
- "finetune": the whole encoder fine-tuned (training.train_teacher), minutes to an hour a fold.

Soft labels are the teacher's logits per training clip (labeled and transfer clips alike), the
mean over the clip's windows as the teacher serves them; computed once per clip and teacher. A
frozen teacher also gives its head's hidden activation per clip, for feature distillation; or,
with `view_targets`, both per cached view of the clip, from the encoder's statistics of that
view's audio (cached for the whole run like the clips' own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.records import Utterance
from training.teacher import checkpoint_sha
from training.teacher_folder import load_teacher_folder, read_kind, write_kind
from training.train_student import StudentConfig, augment_of
from training.views import render_views, teacher_inputs, views_folder

COMPLETE = "COMPLETE"


def train_teacher_stage(fold: Path, parts: dict[str, list[Utterance]], clips: dict, cfg, backbone: Path) -> Path:
    """The fold's teacher in fold/teacher/ (skipped when it is COMPLETE); returns that folder."""
    out = fold / "teacher"
    if (out / COMPLETE).exists():
        return out
    if cfg.teacher_kind == "frozen":
        from training.frozen_teacher import save_head, train_head

        feats = encoder_stats(fold.parent, backbone, [*parts["train"], *parts["val"]], clips)
        head, history = train_head(feats, parts["train"], parts["val"], cfg.teacher, balanced=cfg.balanced)
        save_head(head, cfg.teacher, out, {"backbone": str(backbone), **history})
        write_kind(out, "frozen")   # (training.train_teacher writes its own kind)
    else:
        from dataclasses import replace

        from training.train_teacher import train_teacher

        tcfg = replace(cfg.teacher, backbone=str(backbone))
        data = {p: ([clips[r.id] for r in recs], [r.label for r in recs]) for p, recs in parts.items()}
        # an interrupted run has last/ (weights, optimizer, epoch): continue from there
        train_teacher(tcfg, data["train"], data["val"], out, resume=(out / "last").exists())
    (out / COMPLETE).touch()
    return out


def encoder_stats(run: Path, backbone: Path, records: list[Utterance], clips: dict) -> dict[str, np.ndarray]:
    """The frozen encoder's window statistics of `records`, cached for the whole run."""
    from training.frozen_teacher import WINDOW, cache_dir, layer_stats

    return layer_stats(backbone, records, clips, WINDOW, cache_dir(run / "encoder_stats", backbone, WINDOW))


def soft_labels(fold: Path, teacher_dir: Path, records: list[Utterance], clips: dict) -> np.ndarray:
    """(N, C) teacher logits per record (the mean over its served windows), cached per teacher."""
    if read_kind(teacher_dir) == "frozen":
        return _frozen_head_means(fold, teacher_dir, records, clips, lambda head: head)
    return _cached_logits(teacher_dir, records, clips, fold / "teacher_logits")


def teacher_features(fold: Path, teacher_dir: Path, records: list[Utterance], clips: dict) -> np.ndarray:
    """(N, H) per record: the frozen teacher head's hidden activation (what its classifier reads),
    the mean over the record's served windows; the targets of the student's feature distillation."""
    if read_kind(teacher_dir) != "frozen":
        raise ValueError(f"feature distillation needs a frozen teacher, {teacher_dir} is {read_kind(teacher_dir)!r}")
    return _frozen_head_means(fold, teacher_dir, records, clips, lambda head: head.hidden)


def view_stats(run: Path, backbone: Path, records: list[Utterance], clips: dict,
               scfg: StudentConfig) -> dict[str, np.ndarray]:
    """Per record, (k, L + 1, 2 D): the frozen encoder's statistics of each of its clip's cached
    views for student config `scfg` (rendered here where missing), as a teacher hears that audio
    (training.views.teacher_inputs). Cached in RUN/view_stats/<encoder>-<views>/; 15–25 views a
    second on two cores."""
    from training.frozen_teacher import cached_stats

    augment, win, ids = augment_of(scfg), scfg.windowing, [r.id for r in records]
    trimmed = {r.id: win.trimmed(clips[r.id]) for r in records}
    files = dict(zip(ids, render_views(list(trimmed.values()), ids, win, augment, scfg.seed, scfg.views, run / "views")))
    folder = views_folder(run / "views", win, augment, scfg.seed, scfg.views)
    return cached_stats(backbone, records,
                        lambda r: teacher_inputs(np.load(files[r.id]), trimmed[r.id], r.id, augment, scfg.seed, win.pad),
                        run / "view_stats" / f"{checkpoint_sha(backbone)}-{folder.name}", desc="view stats")


@torch.no_grad()
def view_targets(fold: Path, teacher_dir: Path, records: list[Utterance], clips: dict,
                 scfg: StudentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(N, k, C) logits and (N, k, H) hidden activations of a frozen teacher's head on each cached
    view of the records' clips: the soft labels and feature targets of the very audio the student
    hears in a step."""
    from training.frozen_teacher import head_meta, load_head

    if read_kind(teacher_dir) != "frozen":
        raise ValueError(f"view_targets needs a frozen teacher, {teacher_dir} is {read_kind(teacher_dir)!r}")
    head = load_head(teacher_dir)
    stats = view_stats(fold.parent, Path(head_meta(teacher_dir)["backbone"]), records, clips, scfg)
    views = [torch.from_numpy(stats[r.id].astype(np.float32)) for r in records]
    return np.stack([head(v).numpy() for v in views]), np.stack([head.hidden(v).numpy() for v in views])


@torch.no_grad()
def _frozen_head_means(fold: Path, teacher_dir: Path, records: list[Utterance], clips: dict, output) -> np.ndarray:
    """output(head) applied to each record's cached window statistics, averaged over the windows."""
    from training.frozen_teacher import head_meta, load_head

    head = load_head(teacher_dir)
    backbone = Path(head_meta(teacher_dir)["backbone"])
    feats = encoder_stats(fold.parent, backbone, records, clips)
    fn = output(head)
    return np.stack([fn(torch.from_numpy(feats[r.id].astype(np.float32))).mean(dim=0).numpy()
                     for r in records]).astype(np.float32)


@torch.no_grad()
def _cached_logits(teacher_dir: Path, records: list[Utterance], clips: dict, cache: Path) -> np.ndarray:
    model, window = load_teacher_folder(teacher_dir)
    path = cache / f"{checkpoint_sha(teacher_dir / 'best')}.npz"
    stored = dict(np.load(path)) if path.exists() else {}
    missing = [r for r in records if r.id not in stored]
    for r in tqdm(missing, desc="teacher logits", unit="clip", leave=False):
        w, _ = window.windows(clips[r.id])
        stored[r.id] = model(torch.from_numpy(w)).mean(dim=0).numpy()
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **stored)
    return np.stack([stored[r.id] for r in records]).astype(np.float32)

