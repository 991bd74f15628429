"""Teacher targets per cached view ("consistent teaching"): the frozen encoder's statistics of each
augmented view a student trains on, so that its soft label and feature target describe the audio
the student hears in that step, not the clean clip the view was made from.

    python -m experiments.view_targets --run /work/runs-distill/mc --config configs/multicorpus.json

Every training clip of the config's corpora (labeled and transfer), each of its k views
(training.views), through the frozen encoder as the teacher hears audio: the stored view, or, where
the augmented clip was shorter than the window, that clip once without the view's fill (the
teacher pads nothing). About 25 views/s
on two cores; cached in RUN/view_stats/<encoder sha>-<views key>/ in parts, so a stopped run
resumes. `experiments.fold_students --view-targets` trains on them.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.run import PipelineConfig, backbone_folder, decode_corpus
from training.config import from_dict, read_config
from training.corpora import adapter
from training.frozen_teacher import build_stats
from training.records import read_records
from training.teacher import checkpoint_sha
from training.train_student import augment_of
from training.views import view_file, views_folder

SAVE_EVERY = 250


def view_inputs(clip: np.ndarray, clip_id: str, stored: np.ndarray, augment, seed: int) -> list[np.ndarray]:
    """The teacher's input for each stored (k, S) view of a clip: the view itself, or, where the
    augmented clip was shorter than the window and the view repeats it from a random phase, the
    augmented clip once, in order. Its length and phase come from replaying the view's random
    draws (training.views.render_views); the audio is the stored view's."""
    tag, samples, out = zlib.crc32(clip_id.encode()), stored.shape[1], []
    for j, v in enumerate(stored.astype(np.float32)):
        rng = np.random.default_rng((seed, tag, j))
        n = len(augment(clip, rng)) if augment is not None else len(clip)
        if n >= samples:
            out.append(v)
            continue
        phase = int(rng.integers(0, n))
        if not np.array_equal(v[n:], v[:samples - n]):   # a repeated clip has period n
            raise RuntimeError(f"view {j} of {clip_id} does not repeat every {n} samples: rendered otherwise")
        out.append(v[(np.arange(n) - phase) % n])
    return out


def stats_folder(run: Path, backbone: Path, views: Path) -> Path:
    return run / "view_stats" / f"{checkpoint_sha(backbone)}-{views.name}"


def view_stats(run: Path, backbone: Path, scfg) -> dict[str, np.ndarray]:
    """clip id -> (k, L + 1, 2 D) statistics of its views, for the views of student config `scfg`."""
    views = views_folder(run / "views", scfg.windowing, augment_of(scfg), scfg.seed, scfg.views)
    return load_view_stats(stats_folder(run, backbone, views))


def load_view_stats(folder: Path) -> dict[str, np.ndarray]:
    stored: dict[str, np.ndarray] = {}
    for part in sorted(folder.glob("part*.npz")):
        stored.update(np.load(part))
    return stored


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = from_dict(PipelineConfig, read_config(args.config))
    scfg = cfg.student
    records = read_records(args.run / "records.csv")
    for c in cfg.corpora:
        records += adapter(c.name).transfer(c.root)
    augment, win = augment_of(scfg), scfg.windowing
    views = views_folder(args.run / "views", win, augment, scfg.seed, scfg.views)
    backbone = backbone_folder(cfg.backbone, args.run)
    out = stats_folder(args.run, backbone, views)
    out.mkdir(parents=True, exist_ok=True)
    done = set(load_view_stats(out))
    todo = [r for r in records if r.id not in done]
    print(f"{len(records) - len(todo)} clips done, {len(todo)} to go -> {out}", flush=True)
    if not todo:
        return
    clips = decode_corpus(todo)
    stats, new = build_stats(backbone), {}
    for n, r in enumerate(tqdm(todo, desc="view stats", unit="clip", mininterval=30)):
        inputs = view_inputs(win.trimmed(clips[r.id]), r.id, np.load(view_file(views, r.id)), augment, scfg.seed)
        full = [i for i, x in enumerate(inputs) if len(x) == win.samples]
        rows = [None] * len(inputs)
        for b in range(0, len(full), args.batch):
            idx = full[b:b + args.batch]
            for i, s in zip(idx, stats(torch.from_numpy(np.stack([inputs[i] for i in idx])))):
                rows[i] = s
        for i, x in enumerate(inputs):
            if rows[i] is None:
                rows[i] = stats(torch.from_numpy(x[None]))[0]
        new[r.id] = torch.stack(rows).numpy().astype(np.float16)
        if len(new) == SAVE_EVERY or n == len(todo) - 1:
            np.savez(out / f"part{len(list(out.glob('part*.npz'))):04d}.npz", **new)
            new = {}


if __name__ == "__main__":
    main()
