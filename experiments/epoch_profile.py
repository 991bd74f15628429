"""Where a student training epoch goes, per clip: decoding, augmentation (speed, degradation,
room, noise) and cropping, the filterbank convolution over raw samples, the blocks, the
optimizer; and the same for an epoch read from cached rendered views (training.views).

    python -m experiments.epoch_profile --config configs/multicorpus.json --clips 256

Times a sample of the multi-corpus training clips; an epoch's time is the per-clip time times
the epoch's clips (4,602 for RAVDESS 01-20 + nEMO with transfer clips).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.config import read_config
from training.corpora import adapter, prepare_corpus
from training.data import Augment, ViewDataset, augmented_crop, load_clips
from training.student import LiteCNN
from training.train_student import StudentConfig
from training.views import render_views

EPOCH_CLIPS = 4602


def per_clip(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n * 1000


def real_epochs(config: Path, views_root: Path) -> None:
    """Seconds of one epoch of train_student (alpha 1, 32 validation clips) both ways, one process."""
    import dataclasses

    from training.train_student import train_student

    conf = read_config(config)
    cfg = StudentConfig.from_dict({**conf.get("student", {}), "epochs": 1})
    recs = [r for c in conf["corpora"] for r in prepare_corpus(c["name"], c["root"]) + adapter(c["name"]).transfer(c["root"])]
    clips = load_clips(recs)
    labeled = [i for i, r in enumerate(recs) if r.label][:32]
    val = ([clips[i] for i in labeled], [recs[i].label for i in labeled])
    for name, c in (("before", cfg), ("after", dataclasses.replace(cfg, threads=1, views=8))):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            train_student(c, (clips, [r.label for r in recs]), val, out, ids=[r.id for r in recs], views_root=views_root)
            print(f"{name}: threads {c.threads}, views {c.views}: one epoch over {len(recs)} clips in "
                  f"{time.perf_counter() - t0:.0f} s (load average {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/multicorpus.json"))
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--real-epoch", type=Path, metavar="VIEWS_ROOT",
                    help="instead: one real training epoch over all the clips, the config's way (fresh "
                         "augmentation, its threads) and the fast way (1 thread, 8 cached views from VIEWS_ROOT)")
    args = ap.parse_args()
    if args.real_epoch:
        return real_epochs(args.config, args.real_epoch)
    conf = read_config(args.config)
    cfg = StudentConfig.from_dict(conf.get("student", {}))
    recs = []
    for c in conf["corpora"]:
        rs = prepare_corpus(c["name"], c["root"]) + adapter(c["name"]).transfer(c["root"])
        recs += rs
    rng = np.random.default_rng(0)
    sample = [recs[i] for i in rng.choice(len(recs), args.clips, replace=False)]
    ms = {}
    clips = []
    ms["decode + trim"] = per_clip(lambda: clips.extend(map(cfg.windowing.trimmed, load_clips(sample))), len(sample))
    window = cfg.windowing.samples
    aug = Augment(speed=cfg.speed, degrade_p=cfg.degrade_p, noise_p=cfg.noise_p, reverb_p=cfg.reverb_p)
    [aug(x, rng) for x in clips]   # the room banks (training's, degrade's) are made once per process
    ms["augment + crop"] = per_clip(lambda: [augmented_crop(x, window, aug, rng) for x in clips], len(clips))
    ms["crop only"] = per_clip(lambda: [augmented_crop(x, window, None, rng) for x in clips], len(clips))
    with tempfile.TemporaryDirectory() as tmp:
        ids = [r.id for r in sample]
        ms["render 2 views (once per run, per view)"] = per_clip(
            lambda: render_views(clips, ids, cfg.windowing, aug, 0, 2, Path(tmp)), 2 * len(clips))
        ds = ViewDataset(render_views(clips, ids, cfg.windowing, aug, 0, 2, Path(tmp)), [None] * len(clips))
        ms["read a cached view"] = per_clip(lambda: [ds[i] for i in range(len(ds))], len(ds))
    x = torch.from_numpy(np.stack([augmented_crop(c, window, None, rng) for c in clips]))
    y = torch.randint(0, 6, (len(clips),))
    for threads in args.threads:
        torch.set_num_threads(threads)
        model = LiteCNN(cfg.model).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        bs = cfg.batch_size

        def step(frontend_cached: bool):
            for i in range(0, len(x), bs):
                xb = x[i:i + bs]
                if frontend_cached:
                    with torch.no_grad():
                        feats = model.frontend((xb - xb.mean(1, keepdim=True)) / (xb.std(1, keepdim=True) + 1e-4))
                    t0 = time.perf_counter()
                    h = model.bottleneck(model.blocks(model.norm(feats)))
                    logits = model.head(torch.cat([h.mean(2), h.amax(2)], 1))
                else:
                    t0 = time.perf_counter()
                    logits = model(xb)
                loss = F.cross_entropy(logits, y[i:i + bs])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step.t += time.perf_counter() - t0
        step.t = 0.0
        step(False)   # warm-up
        for cached in (False, True):
            step.t = 0.0
            step(cached)
            ms[f"train step, {threads} thread(s), " + ("front end cached" if cached else "whole model")] = \
                step.t / len(x) * 1000
        with torch.no_grad():
            model.eval()
            ms[f"filterbank forward only, {threads} thread(s)"] = per_clip(
                lambda: [model.frontend(x[i:i + bs]) for i in range(0, len(x), bs)], len(x))
    print(f"| part | ms per clip | s per epoch ({EPOCH_CLIPS} clips) |\n|---|---|---|")
    for k, v in ms.items():
        print(f"| {k} | {v:.2f} | {v * EPOCH_CLIPS / 1000:.0f} |")
    print(json.dumps(ms))
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
