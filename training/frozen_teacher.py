"""A teacher on a frozen speech encoder: learned layer weights over mean+std pooled layers.

``FrozenTeacher(wav (B, S)) -> logits (B, C)``: the pretrained encoder is not trained; each of
its hidden states (the embeddings and every layer) is pooled over time into its mean and
standard deviation, standardised with the training set's statistics, mixed by learned softmax
weights over the layers and classified by a small MLP. Emotion lives in different layers for
different corpora (lower ones for pitch and energy, upper ones for what is said and how), so
the weights are learned rather than one layer chosen.

Because the encoder is frozen, its pooled statistics are computed once per clip window and
cached (``layer_stats``); training the head then takes seconds on cached features, and the
same cache serves every fold, every recipe and the soft labels of the distilled student.
The exported graph is the whole thing, raw waveform in, so the service sees one more bundle.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from service.audio import Windowing
from service.labels import LABELS
from training.records import Utterance
from training.teacher import TeacherModel, _encoder_states, _normalize, build_teacher, checkpoint_sha

HEAD_FILE = "head.pt"
HEAD_META = "head.json"
STD_EPS = 1e-5
PEAK_FLOOR = 1e-4      # a window of digital silence is not scaled up into noise
# How the service cuts audio for this teacher: whole clips up to 6 s, nothing padded
# (repeat-padding 3 s windows cost 0.14 UA on TESS, docs/experiments.md).
WINDOW = Windowing(window_s=6.0, hop_s=3.0, trim_silence=True, pad="none")


class LayerStats(nn.Module):
    """(B, S) waveform -> (B, L + 1, 2 D): mean and std over time of every hidden state.

    Each window is first scaled to peak 1: Whisper's log-mel moves with the level (its
    floor is relative to the loudest bin, the offset is not), and corpora are recorded at
    very different levels."""

    def __init__(self, teacher: TeacherModel):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)

    @property
    def n_states(self) -> int:
        return self.teacher.config.num_hidden_layers + 1

    @property
    def dim(self) -> int:
        return 2 * self.teacher.config.hidden_size

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        t = self.teacher
        wav = wav / wav.abs().amax(dim=1, keepdim=True).clamp(min=PEAK_FLOOR)
        if t.frontend == "whisper":
            states = _encoder_states(t.model.encoder, t.log_mel(wav))
        else:
            x = _normalize(wav) if t.normalize else wav
            states = t.model.base_model(input_values=x, output_hidden_states=True).hidden_states
        h = torch.stack(states, dim=1)                                      # (B, L+1, T, D)
        return torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=-1)


@dataclass
class HeadConfig:
    mix: str = "concat"        # layers weighted, then "concat"enated or "sum"med (docs/experiments.md)
    hidden: int = 128          # MLP width; 0: a linear classifier
    dropout: float = 0.5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.1
    seed: int = 0


class StatsHead(nn.Module):
    """(B, L + 1, 2 D) pooled layer statistics -> logits (B, C)."""

    def __init__(self, n_states: int, dim: int, cfg: HeadConfig, n_classes: int = len(LABELS)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_states, dim))
        self.register_buffer("std", torch.ones(n_states, dim))
        self.layer_logits = nn.Parameter(torch.zeros(n_states))
        self.concat, self.n_states = cfg.mix == "concat", n_states
        dim = dim * n_states if self.concat else dim
        self.mlp = (nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(dim, cfg.hidden), nn.ReLU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_classes)) if cfg.hidden
                    else nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(dim, n_classes)))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.mlp[-1](self.hidden(stats))

    def hidden(self, stats: torch.Tensor) -> torch.Tensor:
        """(B, L + 1, 2 D) -> (B, H): what the last linear layer reads (the MLP's hidden activation,
        or the mixed layers for a linear head); the target of the student's feature distillation."""
        z = (stats - self.mean) / self.std
        w = F.softmax(self.layer_logits, dim=0)
        mixed = (z * w[:, None]).flatten(1) * self.n_states if self.concat else (z * w[:, None]).sum(dim=1)
        return self.mlp[:-1](mixed)

    def layer_weights(self) -> list[float]:
        return F.softmax(self.layer_logits.detach(), dim=0).tolist()


class FrozenTeacher(nn.Module):
    """Raw waveform (B, S) at 16 kHz -> logits (B, C): the frozen encoder's stats and the head."""

    def __init__(self, stats: LayerStats, head: StatsHead):
        super().__init__()
        self.stats, self.head = stats, head

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.head(self.stats(wav))


def layer_stats(backbone: Path, records: list[Utterance], clips: dict[str, np.ndarray], window: Windowing,
                cache: Path, save_every: int = 500) -> dict[str, np.ndarray]:
    """Per clip, (W, L + 1, 2 D) float16 statistics of its W windows as the service cuts them
    (`clips` decoded by training.data.load_clips), from the encoder in `backbone`, cached in
    `cache` (a folder named by `cache_dir`: the encoder's checksum and the window)."""
    return cached_stats(backbone, records, lambda r: list(window.windows(clips[r.id])[0]), cache, save_every)


@torch.no_grad()
def cached_stats(backbone: Path, records: list[Utterance], inputs, cache: Path, save_every: int = 500,
                 desc: str = "encoder stats") -> dict[str, np.ndarray]:
    """Per record, (W, L + 1, 2 D) float16 statistics of the W waveforms `inputs(record)` gives,
    from the encoder in `backbone`; cached in `cache` in parts of `save_every` records, so an
    interrupted run keeps what it computed."""
    cache.mkdir(parents=True, exist_ok=True)
    stored: dict[str, np.ndarray] = {}
    for part in sorted(cache.glob("*.npz")):
        stored.update(np.load(part))
    missing = [r for r in records if r.id not in stored]
    stats = build_stats(backbone) if missing else None
    new: dict[str, np.ndarray] = {}
    for r in tqdm(missing, desc=desc, unit="clip", leave=False):
        new[r.id] = batched(stats, inputs(r)).astype(np.float16)
        if len(new) == save_every or r is missing[-1]:
            np.savez(cache / f"part{len(list(cache.glob('*.npz'))):04d}.npz", **new)
            stored.update(new)
            new = {}
    return {r.id: stored[r.id] for r in records}


def batched(stats: LayerStats, waves: list[np.ndarray], batch: int = 8) -> np.ndarray:
    """(W, L + 1, 2 D): `stats` of each waveform, up to `batch` of one length per call."""
    out: list = [None] * len(waves)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        by_length.setdefault(len(w), []).append(i)
    for idx in by_length.values():
        for b in range(0, len(idx), batch):
            part = idx[b:b + batch]
            for i, s in zip(part, stats(torch.from_numpy(np.stack([waves[i] for i in part])))):
                out[i] = s.numpy()
    return np.stack(out)


def cache_dir(root: Path, backbone: Path, window: Windowing) -> Path:
    return Path(root) / f"{checkpoint_sha(Path(backbone))}-w{window.window_s}-h{window.hop_s}-{window.pad}"


def build_stats(backbone: str | Path) -> LayerStats:
    return LayerStats(build_teacher(backbone, layer_sum=False))


def save_head(head: StatsHead, cfg: HeadConfig, out: Path, extra: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(cfg), "state_dict": head.state_dict(), "n_states": head.mean.shape[0],
                "dim": head.mean.shape[1]}, out / HEAD_FILE)
    (out / HEAD_META).write_text(json.dumps({**extra, "layer_weights": head.layer_weights()}, indent=2) + "\n")


def head_meta(path: Path) -> dict:
    """What save_head wrote beside the weights: the backbone, the layer weights, the history."""
    return json.loads((Path(path) / HEAD_META).read_text())


def load_head(path: Path) -> StatsHead:
    ckpt = torch.load(Path(path) / HEAD_FILE, map_location="cpu", weights_only=True)
    head = StatsHead(ckpt["n_states"], ckpt["dim"], HeadConfig(**ckpt["config"]))
    head.load_state_dict(ckpt["state_dict"])
    return head.eval()


def balance_weights(records: list[Utterance], balanced: bool = True) -> np.ndarray:
    """Per-record loss weights, mean 1. Balanced: each (corpus, class) pair weighs the same in
    total, so a corpus with 3x the clips does not drown the other and each class counts as it
    does in UA; a corpus without a class (nEMO has no disgust) contributes none. Unbalanced:
    every clip weighs the same (plain mixing)."""
    if not balanced:
        return np.ones(len(records))
    keys = [(r.corpus, r.label) for r in records]
    counts = Counter(keys)
    w = np.array([1.0 / counts[k] for k in keys])
    return w / w.mean()


def _windows(feats: list[np.ndarray], per_clip: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of every clip, each clip's value repeated on its windows."""
    x = torch.from_numpy(np.concatenate(feats).astype(np.float32))
    rep = torch.from_numpy(np.repeat(per_clip, [len(f) for f in feats]))
    return x, rep


@torch.no_grad()
def head_probs(head: StatsHead, feats: list[np.ndarray]) -> np.ndarray:
    """(N, C) utterance probabilities: the mean of the window softmaxes, as the service does."""
    head.eval()
    logits = head(torch.from_numpy(np.concatenate(feats).astype(np.float32)))
    probs = F.softmax(logits, dim=1).numpy()
    return np.stack([p.mean(axis=0) for p in np.split(probs, np.cumsum([len(f) for f in feats])[:-1])])


def mean_corpus_ua(probs: np.ndarray, records: list[Utterance]) -> float:
    """UA per corpus, averaged over corpora (each over the classes it has)."""
    from training.evaluate import report_from_probs

    corpora = sorted({r.corpus for r in records})
    return float(np.mean([report_from_probs(probs[[i for i, r in enumerate(records) if r.corpus == c]],
                                            [r for r in records if r.corpus == c])["ua"] for c in corpora]))


def train_head(feats: dict[str, np.ndarray], train: list[Utterance], val: list[Utterance],
               cfg: HeadConfig, balanced: bool = True) -> tuple[StatsHead, dict]:
    """Fit a StatsHead on the cached window statistics of `train`; keep the epoch with the best
    mean-over-corpora UA on `val`. Returns (head, history)."""
    torch.manual_seed(cfg.seed)
    train_feats = [feats[r.id] for r in train]
    x, w = _windows(train_feats, (balance_weights(train, balanced) / [len(f) for f in train_feats]).astype(np.float32))
    _, y = _windows(train_feats, np.array([LABELS.index(r.label) for r in train]))
    head = StatsHead(x.shape[1], x.shape[2], cfg)
    head.mean.copy_(x.mean(dim=0))
    head.std.copy_(x.std(dim=0) + STD_EPS)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val_feats = [feats[r.id] for r in val]
    best, best_state, history = -1.0, None, []
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        head.train()
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            loss = (F.cross_entropy(head(x[idx]), y[idx], reduction="none") * w[idx]).sum() / w[idx].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        ua = mean_corpus_ua(head_probs(head, val_feats), val)
        history.append({"epoch": epoch, "val_ua": ua})
        if ua > best:
            best, best_state = ua, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    return head.eval(), {"best_val_ua": best, "history": history}
