"""Fine-tune the teacher (a transformers speech encoder + classifier) on emotion labels.

One process:       python -m training.train_teacher --config cfg.json --data records.csv \
                       --split split.json --out runs/x/teacher
Data parallel:     torchrun --nproc_per_node N -m training.train_teacher ...  (same flags)

With WORLD_SIZE > 1 every process trains on its shard of each epoch (DistributedSampler,
DistributedDataParallel; NCCL on CUDA, gloo on CPU); rank 0 alone evaluates, saves and
decides on early stopping. ``batch_size`` is per process: the effective batch is
batch_size x grad_accum x world size.

Output folder::

    config.json      the resolved TeacherConfig
    split.json       the split trained on (CLI only)
    history.json     per epoch: loss, val UA / accuracy, learning rates, seconds
    best/            save_teacher() of the epoch with the best validation UA
    last/            the latest epoch + trainer_state.pt (optimizer, schedule), for --resume

Validation goes through the serving path (windows -> softmax -> mean per clip), so the
UA that picks the checkpoint is the UA the service will give.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from training.config import CPU_THREADS, from_dict, read_config
from training.evaluate import predict_probs
from service.audio import Windowing
from service.labels import LABELS
from training.data import Augment, CropDataset, class_weights
from training.metrics import classification_report
from training.teacher import TeacherModel, build_teacher, load_teacher, save_teacher
from training.teacher_folder import write_kind

STATE_FILE = "trainer_state.pt"


@dataclass
class TeacherConfig:
    # A bare config's backbone: Wav2Vec2ForSequenceClassification, ~95M params. Any hub id or
    # local folder of a wav2vec2 / HuBERT / WavLM / Whisper model; `ser pipeline` passes its own
    # default, a packaged Whisper converted offline by training.whisper_convert (docs/design.md).
    backbone: str = "facebook/wav2vec2-base"
    window_s: float = 3.0         # model input length (s); also the serving window
    hop_s: float = 1.0            # serving hop between windows of long audio
    trim_silence: bool = True     # leading/trailing silence trimmed in the shared front end
    epochs: int = 5
    batch_size: int = 8           # windows per step and per process
    grad_accum: int = 1           # micro-batches per optimizer step
    lr: float = 3e-5              # peak learning rate of the pretrained encoder
    lr_head: float = 1e-3         # peak learning rate of the new projector/classifier
    warmup_ratio: float = 0.1     # linear warm-up over this fraction of steps, then linear decay to 0
    weight_decay: float = 0.01    # AdamW; matrices only (not biases, norms, layer weights)
    max_grad_norm: float = 1.0    # gradient clipping; 0 = off
    freeze_feature_encoder: bool = True   # wav2vec2-type conv front end stays as pretrained
    layer_sum: bool = False       # classify a learned weighted sum of all layers, not the last one
    freeze_layers: int = 0        # the encoder's input stage and this many lowest layers stay as pretrained
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    balanced: bool = True         # class-weighted cross-entropy (training.data.class_weights)
    pad: str = "repeat"           # fill windows of short clips by repeating the clip, or with zeros
    spec_augment: list[int] | None = None   # Whisper: [freq_masks, freq_width, time_masks, time_width]
                                  # on the log-mel while training (training.specaug); None = off
    patience: int = 3             # stop after this many epochs without a better val UA; 0 = never
    amp: bool = True              # CUDA only: bf16 autocast (fp16 + GradScaler where bf16 is missing)
    augment: bool = True          # gain + noise on the training crops (training.data.Augment)
    seed: int = 0
    threads: int = CPU_THREADS    # torch intra-op threads per process (CPU)
    num_workers: int = 0          # DataLoader workers; crops come from clips in memory

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected an integer >= 1")
        self.windowing   # a bad window, hop or pad is refused with the config

    @property
    def windowing(self) -> Windowing:
        """How the teacher cuts audio (written into its teacher.json, then into its bundle)."""
        return Windowing(self.window_s, self.hop_s, self.trim_silence, self.pad)

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherConfig":
        return from_dict(cls, d)


# --------------------------------------------------------------------------------------
# Distributed setup
# --------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False      # we created the process group, so we destroy it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, value):
        """rank 0's value, on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _setup_distributed() -> _Dist:
    """From torchrun's env (WORLD_SIZE, RANK, LOCAL_RANK); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return _Dist(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        # Generous timeout: the other ranks wait at a barrier while rank 0 evaluates.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=dt.timedelta(hours=2))
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device, owns_group=owns)


# --------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------


def _optimizer(model: TeacherModel, cfg: TeacherConfig) -> torch.optim.Optimizer:
    """AdamW with two learning rates (encoder, head); no decay on biases/norms/scalars."""
    groups = []
    for params, lr in zip(model.param_groups(), (cfg.lr, cfg.lr_head)):
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        groups += [{"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": rest, "lr": lr, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.AdamW(groups, **fused)


def _schedule(opt: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up to each group's peak lr, then linear decay to 0."""
    warmup = max(1, round(warmup_ratio * total_steps)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _amp(cfg: TeacherConfig, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """(autocast dtype or None, GradScaler or None): bf16 where supported, else fp16 + scaler."""
    if not (cfg.amp and device.type == "cuda"):
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def train_teacher(cfg: TeacherConfig, train: tuple[list, list[str]], val: tuple[list, list[str]],
                  out_dir: str | Path, *, resume: bool = False) -> TeacherModel:
    """Fine-tune ``build_teacher(cfg.backbone)`` on (clips, labels); keep the best val UA.

    Clips are decoded 16 kHz float32 arrays (training.data.load_clips), trimmed here when
    cfg.windowing says so, as the service trims. Under torchrun every rank passes the same
    data; only rank 0 needs ``val``. ``resume=True`` continues from out_dir/last when it
    exists. Returns the best checkpoint, loaded in eval mode.
    """
    ddp = _setup_distributed()
    try:
        return _train(cfg, train, val, Path(out_dir), resume, ddp)
    finally:
        if ddp.owns_group:
            dist.destroy_process_group()


def _train(cfg: TeacherConfig, train, val, out: Path, resume: bool, ddp: _Dist) -> TeacherModel:
    torch.manual_seed(cfg.seed)   # the new head's initialisation (DDP copies rank 0's to the others anyway)
    torch.set_num_threads(cfg.threads)
    if ddp.main and not val[0]:
        raise ValueError("no validation clips; expected at least one (the best checkpoint is chosen on them)")

    state = None
    if resume and (out / "last" / STATE_FILE).is_file():
        model = load_teacher(out / "last")       # weights, head included, as of the last epoch
        if cfg.freeze_feature_encoder and model.frontend == "waveform":
            model.model.freeze_feature_encoder()
        state = torch.load(out / "last" / STATE_FILE, map_location="cpu", weights_only=True)
        _check_resumable(TeacherConfig.from_dict(state["config"]), cfg)
    else:
        model = build_teacher(cfg.backbone, freeze_feature_encoder=cfg.freeze_feature_encoder,
                              layer_sum=cfg.layer_sum)
    model.freeze_lower(cfg.freeze_layers)
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        write_kind(out, "finetune")
    model.spec_augment = tuple(cfg.spec_augment) if cfg.spec_augment else None
    model.to(ddp.device)
    torch.manual_seed(cfg.seed + ddp.rank)   # dropout, LayerDrop, time masking: different on each rank

    train = ([cfg.windowing.trimmed(x) for x in train[0]], train[1])   # views, not copies
    ds = CropDataset(train[0], train[1], cfg.windowing, augment=Augment() if cfg.augment else None, seed=cfg.seed)
    weight = class_weights(train[1]).to(ddp.device) if cfg.balanced else None
    # Also used with one process: a seeded, per-epoch shuffle that resumes reproducibly.
    sampler = DistributedSampler(ds, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=ddp.device.type == "cuda")
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    opt = _optimizer(model, cfg)
    sched = _schedule(opt, cfg.epochs * steps_per_epoch, cfg.warmup_ratio)
    amp_dtype, scaler = _amp(cfg, ddp.device)
    if ddp.world > 1:
        # find_unused_parameters (as transformers' Trainer defaults): LayerDrop skips random
        # layers, and a spec-augment embedding can sit unused; torch warns when a step had none.
        net = DistributedDataParallel(model, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None,
                                      find_unused_parameters=True)
    else:
        net = model

    start, best, bad_epochs, history = 0, -1.0, 0, []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start, best, bad_epochs, history = state["epoch"] + 1, state["best_ua"], state["bad_epochs"], state["history"]

    y_val = np.array([LABELS.index(lab) for lab in val[1]]) if ddp.main else None
    for epoch in range(start, cfg.epochs):
        if cfg.patience and bad_epochs >= cfg.patience:
            break
        t0 = time.time()
        ds.epoch = epoch
        sampler.set_epoch(epoch)
        loss = _train_epoch(net, loader, opt, sched, scaler, amp_dtype, cfg, ddp, weight,
                            desc=f"teacher epoch {epoch + 1}/{cfg.epochs}")

        stop = False
        if ddp.main:
            probs = predict_probs(model, val[0], cfg.windowing, device=ddp.device,
                                  batch_size=cfg.batch_size * 4)
            rep = classification_report(y_val, probs.argmax(1), LABELS)
            if rep["ua"] > best:
                best, bad_epochs = rep["ua"], 0
                save_teacher(model, out / "best", cfg.windowing)
            else:
                bad_epochs += 1
            history.append({"epoch": epoch, "loss": loss, "val_ua": rep["ua"], "val_accuracy": rep["accuracy"],
                            "lr": sched.get_last_lr()[0], "lr_head": sched.get_last_lr()[-1],
                            "seconds": round(time.time() - t0, 1)})
            tqdm.write(f"epoch {epoch + 1}: loss {loss:.4f}  val UA {rep['ua']:.4f}  accuracy {rep['accuracy']:.4f}")
            _save_last(model, out, cfg, opt, sched, scaler, epoch, best, bad_epochs, history)
            (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
            stop = bool(cfg.patience and bad_epochs >= cfg.patience)
        if ddp.broadcast(stop):   # a collective: the other ranks wait here while rank 0 evaluates
            if ddp.main:
                tqdm.write(f"early stop: no better val UA for {cfg.patience} epochs (best {best:.4f})")
            break
    ddp.barrier()   # rank 0 has written best/
    return load_teacher(out / "best")


def _train_epoch(net, loader, opt, sched, scaler, amp_dtype, cfg: TeacherConfig, ddp: _Dist,
                 weight: torch.Tensor | None, desc: str) -> float:
    """One pass over this rank's shard; returns the mean loss over all ranks."""
    net.train()
    device = ddp.device
    total, count = torch.zeros((), device=device), 0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not ddp.main)
    opt.zero_grad(set_to_none=True)
    for i, (x, y, _) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        step_now = (i + 1) % cfg.grad_accum == 0 or i + 1 == len(loader)
        # Skip the gradient all-reduce on micro-batches that do not end in an optimizer step.
        sync = nullcontext() if step_now or ddp.world == 1 else net.no_sync()
        autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
        with sync:
            with autocast:
                loss = F.cross_entropy(net(x).float(), y, weight=weight, label_smoothing=cfg.label_smoothing)
            (scaler.scale(loss / cfg.grad_accum) if scaler else loss / cfg.grad_accum).backward()
        if step_now:
            if scaler:
                scaler.unscale_(opt)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.max_grad_norm)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        total += loss.detach() * len(y)
        count += len(y)
        if ddp.main and i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    stats = torch.stack([total, torch.tensor(float(count), device=device)])
    if ddp.world > 1:
        dist.all_reduce(stats)
    return float(stats[0] / stats[1].clamp(min=1))


def _save_last(model, out: Path, cfg: TeacherConfig, opt, sched, scaler, epoch: int, best: float, bad_epochs: int,
               history: list) -> None:
    """out/last: this epoch's teacher + optimizer/schedule state, written then swapped in."""
    tmp = out / "last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_teacher(model, tmp, cfg.windowing)
    torch.save({"config": asdict(cfg), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler else None, "epoch": epoch, "best_ua": best,
                "bad_epochs": bad_epochs, "history": history}, tmp / STATE_FILE)
    shutil.rmtree(out / "last", ignore_errors=True)
    tmp.rename(out / "last")


# A resumed run may run longer or on other hardware; anything else would silently mix two runs.
RESUME_MAY_CHANGE = frozenset({"epochs", "patience", "threads", "num_workers", "amp"})


def _check_resumable(saved: TeacherConfig, cfg: TeacherConfig) -> None:
    changed = {k: (v, getattr(cfg, k)) for k, v in asdict(saved).items()
               if k not in RESUME_MAY_CHANGE and getattr(cfg, k) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
        raise ValueError(f"cannot resume with a changed config ({detail}); only {sorted(RESUME_MAY_CHANGE)} may change")


# --------------------------------------------------------------------------------------
# Command line (what torchrun launches)
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train_teacher", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="JSON file of TeacherConfig overrides (unknown keys are errors)")
    p.add_argument("--data", required=True, help="records.csv (training.records)")
    p.add_argument("--split", required=True, help="split.json (training.splits)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last if present")
    args = p.parse_args(argv)

    from training.data import load_clips
    from training.records import read_records
    from training.splits import apply_split, read_split, write_split

    cfg = from_dict(TeacherConfig, read_config(args.config))
    split = read_split(args.split)
    parts = apply_split(read_records(args.data), split)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    data = {}
    for part in ("train", "val"):
        if part == "val" and not main_rank:   # only rank 0 evaluates
            data[part] = ([], [])
            continue
        records = parts[part]
        if not records:
            raise ValueError(f"the split has no {part} records; expected at least one")
        data[part] = (load_clips(records, desc=part), [r.label for r in records])
    if main_rank:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_split(split, Path(args.out) / "split.json")
    t0 = time.time()
    train_teacher(cfg, data["train"], data["val"], args.out, resume=args.resume)
    if main_rank:
        print(f"trained in {time.time() - t0:.0f} s -> {Path(args.out) / 'best'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
