"""How the frozen teacher's head does on a new speaker of a corpus as that corpus gives it more
training speakers: a learning curve over speakers, from the cached encoder statistics.

    python -m experiments.speaker_curve --run /work/runs-distill/mc [--corpus nemo] [--repeats 3]

Each speaker of --corpus in turn is the test speaker; the head (the shipped HeadConfig) trains on
n of the corpus's other speakers (--repeats random draws of them; one when n is all of them) and
on every speaker of the other corpora but their validation speakers, which choose its epoch (no
speaker of --corpus is spent on that). Prints the test speaker's UA per n, then the mean and
spread over test speakers. Seconds per head; needs RUN/encoder_stats (the pipeline's layout).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from experiments.oof_teacher import probs_of, window_logits
from pipeline.run import PipelineConfig, backbone_folder
from pipeline.teachers import encoder_stats
from training.config import from_dict, read_config
from training.corpora import prepare_corpus
from training.evaluate import report_from_probs
from training.frozen_teacher import train_head
from training.splits import split_by_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=Path("configs/multicorpus.json"))
    ap.add_argument("--corpus", default="nemo")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = from_dict(PipelineConfig, read_config(args.config))
    records = [r for c in cfg.corpora for r in prepare_corpus(c.name, c.root)]
    feats = encoder_stats(args.run, backbone_folder(cfg.backbone, args.run), records, {})
    mine = [r for r in records if r.corpus == args.corpus]
    others = [r for r in records if r.corpus != args.corpus]
    split = split_by_corpus(others, seed=cfg.seed, val_speakers=cfg.val_speakers)
    val = [r for r in others if r.speaker in set(split.val)]
    fixed = [r for r in others if r.speaker not in set(split.val)]
    speakers = sorted({r.speaker for r in mine})
    curve: dict[int, list[float]] = {}
    for test in speakers:
        rest = [s for s in speakers if s != test]
        clips = [r for r in mine if r.speaker == test]
        for n in range(2, len(rest) + 1):
            scores = []
            for rep in range(args.repeats if n < len(rest) else 1):
                chosen = set(random.Random(rep * 100 + n).sample(rest, n))
                head, _ = train_head(feats, fixed + [r for r in mine if r.speaker in chosen], val, cfg.teacher,
                                     balanced=cfg.balanced)
                p = probs_of([window_logits(head, feats[r.id]) for r in clips])
                scores.append(report_from_probs(p, clips)["ua"])
            curve.setdefault(n, []).append(float(np.mean(scores)))
            print(f"{test}, {n} training speakers: UA {np.mean(scores):.3f}", flush=True)
    for n, v in curve.items():
        print(f"{n} {args.corpus} training speakers: a new speaker's UA {np.mean(v):.3f} ± {np.std(v):.3f} "
              f"(sd over the {len(v)} test speakers)")


if __name__ == "__main__":
    main()
