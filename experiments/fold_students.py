"""Out-of-fold predictions of a student recipe and of the frozen teacher, for choosing recipes
and the fallback threshold on speakers the models never heard.

    python -m experiments.fold_students --run /work/runs-distill/mc --config configs/multicorpus-fast.json \
        --epochs 20 [--folds 0 1 2 3] [--loco] [--name student_kd] [--feature-kd 1.0]

The pipeline's k speaker folds (kfold_by_corpus, its seed), and with --loco its leave-one-corpus-out
splits (RUN/loco-<corpus>: trained on the other corpora, tested on every speaker of this one), in the
pipeline's layout. Per split: the teacher head on the cached encoder statistics (RUN/encoder_stats),
then the distilled student (`train_student_stage`: views, threads and resumption from last.pt as
configured), its temperature fitted on the split's val speakers as the export fits it. Writes
RUN/<split>/<name>/oof.npz: the ids of the split's test clips and of TESS OAF, the student's
calibrated probabilities (torch, float32, the served windows) and the teacher head's probabilities
for them. Each stage is skipped when done, so a stopped run resumes. `experiments.fallback_table`
and `experiments.loco_table` read the oof files.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from experiments.oof_teacher import probs_of, window_logits
from experiments.pad_mode import middle_second
from pipeline.run import PipelineConfig, backbone_folder, decode_corpus, splits, train_student_stage
from pipeline.teachers import encoder_stats, train_teacher_stage
from training.calibrate import fit_temperature, utterance_probs
from training.config import from_dict, read_config
from training.corpora import adapter, prepare_corpus
from training.frozen_teacher import balance_weights, load_head, train_head
from training.records import read_records, write_records
from training.splits import apply_split, kfold_by_corpus, read_split, write_split
from training.train_student import load_student, train_student

TESS = "../shared/data/tess-oaf/manifest.csv"
INNER_FOLDS = 3


@torch.no_grad()
def student_logits(ckpt: Path, clips: list[np.ndarray]) -> list[np.ndarray]:
    model, cfg = load_student(ckpt)
    return [model(torch.from_numpy(cfg.windowing.windows(x)[0])).numpy() for x in clips]


def add_short_clips(oof: Path, ckpt: Path, clips: dict) -> None:
    """Adds `student_1s` to an oof file: the calibrated student on the middle second of each clip."""
    z = dict(np.load(oof))
    if "student_1s" in z:
        return
    t = json.loads((oof.parent / "calibration.json").read_text())["temperature"]
    z["student_1s"] = utterance_probs(student_logits(ckpt, [middle_second(clips[i]) for i in z["ids"]]), t)
    np.savez(oof, **z)


def student_config(cfg: PipelineConfig, feature_kd: float | None):
    """The recipe's distilled student: the config's, with its alpha, and feature_kd when given."""
    scfg = replace(cfg.student, alpha=cfg.alpha)
    return scfg if feature_kd is None else replace(scfg, feature_kd=feature_kd)


def nested_oof_logits(run: Path, backbone: Path, cfg, parts: dict, transfer: list, clips: dict) -> np.ndarray:
    """(N, C) soft labels of parts["train"] + transfer: inner speaker folds of the training speakers,
    a head per inner fold trained on the others (early stopping on the fold's val speakers), each
    clip labelled by the head that never heard its speaker. The test speakers stay unseen."""
    train = parts["train"]
    every = [*train, *transfer]
    feats = encoder_stats(run, backbone, [*every, *parts["val"]], clips)
    out = {}
    for inner in kfold_by_corpus(train, INNER_FOLDS, seed=cfg.seed):
        held = set(inner.test)
        head, _ = train_head(feats, [r for r in train if r.speaker not in held], parts["val"], cfg.teacher,
                             balanced=cfg.balanced)
        for r in every:
            if r.speaker in held:
                out[r.id] = window_logits(head, feats[r.id]).mean(axis=0)
    return np.stack([out[r.id] for r in every]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--epochs", type=int, help="the split students' (shorter) schedule")
    ap.add_argument("--folds", type=int, nargs="*", help="the folds to run (default all; none: only --loco)")
    ap.add_argument("--loco", action="store_true", help="also the leave-one-corpus-out splits")
    ap.add_argument("--name", default="student_kd", help="the student's folder in each fold (one per recipe)")
    ap.add_argument("--soft-labels", choices=("fold", "oof"), default="fold",
                    help="fold: the fold teacher's (today's recipe); oof: each training clip's from a head "
                         "that never heard its speaker (nested folds inside the fold's training speakers)")
    ap.add_argument("--feature-kd", type=float,
                    help="the student's feature_kd (feature distillation from the fold teacher's head)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    conf = read_config(args.config)
    if args.epochs:
        conf["student"] = {**conf.get("student", {}), "epochs": args.epochs}
    cfg = replace(from_dict(PipelineConfig, conf), run_folds=args.folds, loco=args.loco)
    records, transfer = [], []
    for c in cfg.corpora:
        records += prepare_corpus(c.name, c.root)
        transfer += adapter(c.name).transfer(c.root)
    if (args.run / "records.csv").exists():
        records = read_records(args.run / "records.csv")
    else:
        write_records(records, args.run / "records.csv")   # written once: runs beside each other only read it
    tess = prepare_corpus("manifest", TESS, corpus="tess-oaf")
    every = [*records, *transfer, *tess]
    clips = decode_corpus(every)
    backbone = backbone_folder(cfg.backbone, args.run)
    for name, split in splits(records, cfg):
        fold = args.run / name
        fold.mkdir(parents=True, exist_ok=True)
        if not (fold / "split.json").exists():
            write_split(split, fold / "split.json")
        parts = apply_split(records, read_split(fold / "split.json"))
        speakers = {r.speaker for r in parts["train"]}
        teacher_dir = train_teacher_stage(fold, parts, clips, cfg, backbone)
        scfg = student_config(cfg, args.feature_kd)
        out = fold / args.name
        fold_transfer = [r for r in transfer if r.speaker in speakers]
        if not (out / "history.json").exists() and args.soft_labels == "fold":
            train_student_stage(fold, args.name, scfg, parts, fold_transfer, clips, cfg, teacher_dir)
        elif not (out / "history.json").exists():
            train = parts["train"] + fold_transfer
            logits = nested_oof_logits(args.run, backbone, cfg, parts, fold_transfer, clips)
            weights = balance_weights(train, cfg.balanced) * np.array([cfg.weight(r.corpus) for r in train])
            train_student(scfg, ([clips[r.id] for r in train], [r.label for r in train]),
                          ([clips[r.id] for r in parts["val"]], [r.label for r in parts["val"]]), out,
                          teacher_logits=logits, weights=weights, ids=[r.id for r in train],
                          views_root=args.run / "views")
        ckpt = out / "student.pt"
        if (out / "oof.npz").exists():
            add_short_clips(out / "oof.npz", ckpt, clips)
            continue
        cal = fit_temperature(student_logits(ckpt, [clips[r.id] for r in parts["val"]]), parts["val"])
        scored = [*parts["test"], *tess]
        student = utterance_probs(student_logits(ckpt, [clips[r.id] for r in scored]), cal["temperature"])
        head = load_head(teacher_dir)
        feats = encoder_stats(args.run, backbone, scored, clips)
        teacher = probs_of([window_logits(head, feats[r.id]) for r in scored])
        np.savez(out / "oof.npz", ids=np.array([r.id for r in scored]), corpus=np.array([r.corpus for r in scored]),
                 labels=np.array([r.label for r in scored]), student=student, teacher=teacher)
        (out / "calibration.json").write_text(json.dumps(cal, indent=1))
        add_short_clips(out / "oof.npz", ckpt, clips)
        print(f"{name}: done ({len(scored)} clips scored)", flush=True)


if __name__ == "__main__":
    main()
