"""Out-of-fold predictions and soft labels of the frozen teacher, from its cached encoder statistics.

    python -m experiments.oof_teacher --run /work/runs-distill/mc [--config configs/multicorpus.json]
        [--head '{"hidden": 0}' ...]

For each of the pipeline's k speaker folds (kfold_by_corpus, the pipeline's seed), a teacher head
(the shipped HeadConfig) is trained on the fold's training speakers and predicts its test
speakers and TESS OAF. Every RAVDESS and nEMO clip, transfer clips included, thus gets a
prediction and a soft label (logits) from a head that never heard its speaker. Needs the encoder
statistics cached in RUN/encoder_stats (the pipeline's layout); writes RUN/oof_teacher.npz
(id -> mean window logits) and prints UA per corpus. Seconds per head. Each --head (HeadConfig
fields over the config's, as JSON) is a variant scored the same way, for comparing head recipes;
RUN/oof_teacher.npz is written only without them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline.run import PipelineConfig, backbone_folder
from pipeline.teachers import encoder_stats
from training.config import from_dict, read_config
from training.corpora import adapter, prepare_corpus
from training.evaluate import report_from_probs
from training.frozen_teacher import train_head
from training.splits import apply_split, kfold_by_corpus


def window_logits(head, feats: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(feats.astype(np.float32))).numpy()


def probs_of(logits: list[np.ndarray]) -> np.ndarray:
    """The served answer: the mean over windows of the softmax."""
    out = []
    for z in logits:
        p = np.exp(z - z.max(1, keepdims=True))
        out.append((p / p.sum(1, keepdims=True)).mean(0))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=Path("configs/multicorpus.json"))
    ap.add_argument("--head", type=json.loads, action="append", help="a HeadConfig variant (JSON), repeatable")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = from_dict(PipelineConfig, read_config(args.config))
    records, transfer = [], []
    for c in cfg.corpora:
        records += prepare_corpus(c.name, c.root)
        transfer += adapter(c.name).transfer(c.root)
    tess = prepare_corpus("manifest", "../shared/data/tess-oaf/manifest.csv", corpus="tess-oaf")
    every = [*records, *transfer, *tess]
    # every clip is cached already, so the clips themselves are not needed (no decoding)
    feats = encoder_stats(args.run, backbone_folder(cfg.backbone, args.run), every, {})
    if not args.head:
        oof, rows = out_of_fold(cfg.teacher, cfg, records, transfer, tess, feats)
        np.savez(args.run / "oof_teacher.npz", **{k: v.mean(0) for k, v in oof.items()})
        print("\n".join(rows))
    for variant in args.head or []:
        _, rows = out_of_fold(replace(cfg.teacher, **variant), cfg, records, transfer, tess, feats)
        print(json.dumps(variant), "|", " | ".join(rows[-3:]), flush=True)


def out_of_fold(head_cfg, cfg, records, transfer, tess, feats) -> tuple[dict, list[str]]:
    """Every clip's logits from the fold head that never heard its speaker, and the UA lines."""
    oof, tess_ua, rows = {}, [], []
    for i, split in enumerate(kfold_by_corpus(records, cfg.folds, seed=cfg.seed, val_speakers=cfg.val_speakers)):
        parts = apply_split(records, split)
        head, _ = train_head(feats, parts["train"], parts["val"], head_cfg, balanced=cfg.balanced)
        test_speakers = set(split.test)
        for r in [*parts["test"], *(t for t in transfer if t.speaker in test_speakers)]:
            oof[r.id] = window_logits(head, feats[r.id])
        p = probs_of([window_logits(head, feats[r.id]) for r in tess])
        tess_ua.append(report_from_probs(p, tess)["ua"])
        rows.append(f"fold {i}: TESS OAF {tess_ua[-1]:.3f}")
    for corpus in sorted({r.corpus for r in records}):
        recs = [r for r in records if r.corpus == corpus]
        rows.append(f"{corpus} out of fold ({len(recs)} clips): UA "
                    f"{report_from_probs(probs_of([oof[r.id] for r in recs]), recs)['ua']:.3f}")
    rows.append(f"TESS OAF over the fold heads: {np.mean(tess_ua):.3f} ± {np.std(tess_ua):.3f}")
    return oof, rows


if __name__ == "__main__":
    main()
