"""Train LiteCNN alone (alpha=1) or distilled from cached teacher logits (alpha<1).

Loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))
       + feature_kd * (1 - cos(P(student features), teacher features))
The last term (feature distillation, off by default) regresses the teacher's per-clip representation
from the student's pooled features through a linear projection P that lives only in training.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from training.config import CPU_THREADS, from_dict
from training.evaluate import predict_probs
from service.audio import SAMPLE_RATE, Windowing
from service.labels import LABELS
from training.data import UNLABELED, Augment, CropDataset, ViewDataset, class_weights
from training.metrics import classification_report
from training.student import LiteCNN, LiteCNNConfig
from training.views import render_views


@dataclass
class StudentConfig:
    window_s: float = 3.0         # model input length; trimmed RAVDESS speech is ~2 s
    hop_s: float = 1.0            # serving hop between windows of long audio
    trim_silence: bool = True     # leading/trailing silence trimmed in the shared front end
    pad: str = "zero"             # fill short clips with zeros or by repeating them (service.audio.fill)
    epochs: int = 80              # with augmentation and KD it still improves after 40 (docs/experiments.md)
    batch_size: int = 32
    lr: float = 3e-3              # peak of a one-cycle schedule (warm-up then cosine decay)
    weight_decay: float = 1e-2
    alpha: float = 1.0            # weight of the hard-label CE; 1.0 = no distillation
    temperature: float = 2.0      # KD softening temperature T
    feature_kd: float = 0.0       # weight of the feature-distillation term; 0 = off (needs teacher_features)
    augment: bool = True
    short_p: float = 0.0          # fraction of training windows cut to a shorter clip and filled as served
    short_min_s: float = 0.8      # ... of at least this many seconds (training.data.shorten)
    speed: float = 0.1            # speed perturbation: resample by 1 +- this (pitch, formants and tempo)
    degrade_p: float = 0.0        # fraction of crops degraded like users' audio (training.data.Augment)
    noise_p: float = 0.3          # fraction of crops with pink noise at 0-20 dB SNR
    reverb_p: float = 0.3         # fraction of crops played in a simulated room
    balanced: bool = False        # class-weighted hard-label loss (training.data.class_weights)
    frontend_lr_scale: float = 1.0   # learning-rate factor of the filterbank (keep it near its mel init)
    views: int = 0                # > 0: this many augmented views per clip, rendered once and cached
                                  # (training.views); an epoch reads one. 0: fresh augmentation every epoch
    view_targets: bool = False    # the teacher's targets (logits, features) per view, from its answer on
                                  # that view's audio, not one per clip (needs views and a frozen teacher)
    seed: int = 0
    threads: int = CPU_THREADS    # torch intra-op threads
    model: LiteCNNConfig = field(default_factory=LiteCNNConfig)

    def __post_init__(self) -> None:
        self.windowing   # a bad window, hop or pad is refused with the config, before any audio is decoded
        if self.short_p and not 0 < self.short_min_s < self.window_s:
            raise ValueError(f"short_min_s {self.short_min_s} must lie between 0 and window_s {self.window_s}")
        if self.view_targets and not self.views:
            raise ValueError("view_targets needs cached views (views > 0)")

    @property
    def windowing(self) -> Windowing:
        """How this student cuts audio: what its bundle carries and the service serves it with."""
        return Windowing(self.window_s, self.hop_s, self.trim_silence, self.pad)

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        return from_dict(cls, d)


def kd_loss(logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor, alpha: float, T: float,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    labeled = y != UNLABELED
    ce = F.cross_entropy(logits[labeled], y[labeled], weight=weight) if labeled.any() else logits.sum() * 0
    if alpha >= 1.0:
        return ce
    kl = F.kl_div(F.log_softmax(logits / T, dim=1), F.log_softmax(teacher / T, dim=1),
                  log_target=True, reduction="batchmean")
    return alpha * ce + (1 - alpha) * T * T * kl


def feature_loss(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between (B, H) projected student features and (B, H) teacher targets."""
    return (1 - F.cosine_similarity(projected, target, dim=1)).mean()


def standardise(feats: np.ndarray) -> np.ndarray:
    """(N, H) or (N, k, H) teacher features z-scored per dimension over the training clips (and
    views): ReLU activations share a large positive mean, and a cosine on them would reward matching
    that instead of what differs."""
    flat = feats.reshape(-1, feats.shape[-1])
    return ((feats - flat.mean(axis=0)) / (flat.std(axis=0) + 1e-5)).astype(np.float32)


def augment_of(cfg: StudentConfig) -> Augment | None:
    """The augmentation of the student's training crops (and of its cached views)."""
    if not cfg.augment:
        return None
    return Augment(speed=cfg.speed, degrade_p=cfg.degrade_p, noise_p=cfg.noise_p, reverb_p=cfg.reverb_p)


def train_student(cfg: StudentConfig, train: tuple[list, list[str | None]], val: tuple[list, list[str]],
                  out_dir: str | Path, *, teacher_logits: np.ndarray | None = None,
                  weights: np.ndarray | None = None, ids: list[str] | None = None,
                  views_root: Path | None = None, teacher_features: np.ndarray | None = None) -> LiteCNN:
    """Train on (clips, labels); keep the checkpoint with the best validation UA.

    Clips are decoded 16 kHz float32 arrays (training.data.load_clips), trimmed here when
    cfg.windowing says so, as the service trims; a label None marks an unlabeled clip, which
    teaches through its soft label only.
    teacher_logits: (N, C) per example. teacher_features: (N, H) per example, the targets of
    feature distillation (cfg.feature_kd > 0). With cached views, both may instead be given per
    view, (N, k, C) and (N, k, H): the teacher's answer on the very audio of each view.
    weights: how often each example is drawn (an epoch draws N crops with replacement; None: each
    example once per epoch, shuffled).
    ids, views_root: the clips' stable ids and the folder of cached views (cfg.views > 0).
    Writes out_dir/{student.pt, config.json, history.json}; out_dir/last.pt holds the state
    after the last finished epoch, so a stopped run resumes there.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    if cfg.alpha < 1.0 and teacher_logits is None:
        raise ValueError("alpha < 1 (distillation) needs teacher_logits")
    train = ([cfg.windowing.trimmed(x) for x in train[0]], train[1])   # views, not copies
    n_classes = cfg.model.n_classes
    soft = teacher_logits
    if cfg.feature_kd > 0:
        if teacher_features is None:
            raise ValueError("feature_kd > 0 needs teacher_features")
        # the datasets carry one target row per clip (or view): the teacher's logits, then its features
        shape = (*teacher_features.shape[:-1], n_classes)
        logits = teacher_logits if teacher_logits is not None else np.zeros(shape, np.float32)
        soft = np.concatenate([logits, standardise(teacher_features)], axis=-1).astype(np.float32)
    augment = augment_of(cfg)
    short = (cfg.short_p, int(cfg.short_min_s * SAMPLE_RATE))
    if cfg.views:
        if ids is None or views_root is None:
            raise ValueError("views > 0 needs the clips' ids and a views_root folder")
        views = render_views(train[0], ids, cfg.windowing, augment, cfg.seed, cfg.views, views_root)
        ds = ViewDataset(views, train[1], soft=soft, seed=cfg.seed, short=short, pad=cfg.pad)
    elif soft is not None and soft.ndim == 3:
        raise ValueError("teacher targets per view need cached views (views > 0)")
    else:
        ds = CropDataset(train[0], train[1], cfg.windowing, soft=soft, augment=augment, seed=cfg.seed, short=short)
    gen = torch.Generator()
    sampler = None if weights is None else WeightedRandomSampler(weights, len(ds), generator=gen)
    # drop a ragged last batch (BatchNorm dislikes tiny ones) unless it is the only one
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=len(ds) > cfg.batch_size, generator=gen)
    weight = class_weights([lab for lab in train[1] if lab]) if cfg.balanced else None
    model = LiteCNN(cfg.model)
    # trained with the student, never exported: student.pt holds the model alone
    projection = nn.Linear(model.feature_dim, teacher_features.shape[-1]) if cfg.feature_kd > 0 else None
    opt, sched = _optimizer(model, cfg, steps=cfg.epochs * len(loader), extra=projection)
    y_val = np.array([LABELS.index(lab) for lab in val[1]])
    best, history, start = -1.0, [], 0
    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        if state["config"] == asdict(cfg):
            model.load_state_dict(state["model"])
            if projection is not None:
                projection.load_state_dict(state["projection"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            best, history, start = state["best"], state["history"], state["epoch"] + 1
    bar = tqdm(range(start, cfg.epochs), desc=f"student alpha={cfg.alpha}", unit="epoch",
               initial=start, total=cfg.epochs)
    for epoch in bar:
        ds.epoch = epoch
        gen.manual_seed(cfg.seed * 100_003 + epoch)   # an epoch draws the same clips whether resumed or not
        torch.manual_seed(cfg.seed * 100_003 + epoch)   # dropout and SpecAugment masks too
        model.train()
        t0, losses = time.time(), []
        for x, y, target in loader:
            feats = model.features(x)                                # (B, 2C)
            loss = kd_loss(model.head(feats), y, target[:, :n_classes], cfg.alpha, cfg.temperature, weight)
            if projection is not None:
                loss = loss + cfg.feature_kd * feature_loss(projection(feats), target[:, n_classes:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        probs = predict_probs(model, val[0], cfg.windowing)
        rep = classification_report(y_val, probs.argmax(1), LABELS)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_ua": rep["ua"],
                        "val_accuracy": rep["accuracy"], "seconds": round(time.time() - t0, 1)})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_ua=f"{rep['ua']:.3f}")
        if rep["ua"] > best:
            best = rep["ua"]
            torch.save({"config": asdict(cfg), "state_dict": model.state_dict(), "epoch": epoch, "val_ua": best},
                       out / "student.pt")
        torch.save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch, "best": best, "history": history,
                    "projection": projection.state_dict() if projection is not None else None},
                   out / "last.tmp")
        (out / "last.tmp").replace(last)   # never a half-written checkpoint
    (out / "history.json").write_text(json.dumps(history, indent=2))
    return load_student(out / "student.pt")[0]


def _optimizer(model: LiteCNN, cfg: StudentConfig, steps: int, extra: nn.Module | None = None):
    """AdamW with a one-cycle schedule (warm-up, then cosine decay); the filterbank may get a
    smaller learning rate than the rest (which includes `extra`, a training-only module)."""
    front = list(model.frontend.parameters())
    rest = [p for p in model.parameters() if all(p is not f for f in front)]
    rest += list(extra.parameters()) if extra is not None else []
    lrs = [cfg.lr * cfg.frontend_lr_scale, cfg.lr]
    opt = torch.optim.AdamW([{"params": front, "lr": lrs[0]}, {"params": rest, "lr": lrs[1]}],
                            weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=steps, pct_start=0.15)


def load_student(path: str | Path) -> tuple[LiteCNN, StudentConfig]:
    """Rebuild a LiteCNN from a checkpoint (config + weights), in eval mode."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = StudentConfig.from_dict(ckpt["config"])
    model = LiteCNN(cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), cfg
