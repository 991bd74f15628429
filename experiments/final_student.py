"""A student recipe on the final split, trained and exported as a calibrated bundle, to compare
with the shipped one on the shipped pair's held-out audio (`experiments.pad_mode --student`).

    python -m experiments.final_student --run RUN --config configs/multicorpus-fast.json \
        --name student_fkd3 [--feature-kd 3] --out DIR

RUN is a pipeline run folder (records.csv and the encoder's statistics: `ser pipeline` makes them);
the final split (RUN/final/split.json) and its teacher (RUN/final/teacher/) are made as
`ser pipeline --final` makes them when they are not there yet. The student trains into
RUN/final/NAME with the config's student recipe (resumable from its last.pt), distilled from the
final teacher, and is exported into DIR as the pipeline exports a student (parity-checked,
calibrated on the validation speakers), with its int8 copy in DIR-int8 (label agreement with the
float model checked on TESS OAF, as the pipeline checks it on audio it did not train on). It then prints the student's UA on its own training
speakers (up to 300 labeled clips per corpus, whole clips, no augmentation): the convergence check.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from experiments.fold_students import TESS, student_config
from export.bundles import INT8_NOTE, STUDENT_DESCRIPTION, export_bundle, export_quantized, split_info, student_name
from pipeline.run import PipelineConfig, backbone_folder, decode_corpus, train_student_stage
from pipeline.teachers import train_teacher_stage
from service.audio import load_audio
from training.config import from_dict, read_config
from training.corpora import adapter, prepare_corpus, write_corpus_info
from training.evaluate import predict_probs, report_from_probs
from training.records import read_records
from training.splits import apply_split, read_split, split_by_corpus, write_split
from training.train_student import load_student


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--name", required=True, help="the student's folder in RUN/final")
    ap.add_argument("--feature-kd", type=float, help="the student's feature_kd; the config's when not given")
    ap.add_argument("--out", type=Path, required=True, help="the bundle folder to write")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = from_dict(PipelineConfig, read_config(args.config))
    fold = args.run / "final"
    records = read_records(args.run / "records.csv")
    if not (fold / "split.json").exists():
        fold.mkdir(exist_ok=True)
        write_split(split_by_corpus(records, val_speakers=cfg.val_speakers, seed=cfg.seed), fold / "split.json")
    parts = apply_split(records, read_split(fold / "split.json"))
    speakers = {r.speaker for r in parts["train"]}
    transfer = [t for c in cfg.corpora for t in adapter(c.name).transfer(c.root) if t.speaker in speakers]
    clips = decode_corpus([*parts["train"], *parts["val"], *transfer])
    train_teacher_stage(fold, parts, clips, cfg, backbone_folder(cfg.backbone, args.run))
    if not (fold / args.name / "history.json").exists():
        scfg = student_config(cfg, args.feature_kd)
        train_student_stage(fold, args.name, scfg, parts, transfer, clips, cfg, fold / "teacher")
    ckpt = fold / args.name / "student.pt"
    model, scfg = load_student(ckpt)
    corpus = write_corpus_info(args.run, [(c.name, c.root) for c in cfg.corpora])   # as the pipeline records it
    bundle, _ = export_bundle(model, args.out, role="student", name=student_name(corpus), windowing=scfg.windowing,
                              parts=parts, training={**split_info(fold, parts),
                                                     "config": json.loads((ckpt.parent / "config.json").read_text())},
                              license=corpus["license"], description=STUDENT_DESCRIPTION,
                              eval_dir=args.out.parent / f"eval-{args.name}")
    print(f"{bundle.path}: temperature {bundle.temperature:.3f}")
    tess = prepare_corpus("manifest", TESS, corpus="tess-oaf")
    int8, _ = export_quantized(args.out, args.out.with_name(args.out.name + "-int8"), parts,
                               args.out.parent / f"eval-{args.name}-int8", STUDENT_DESCRIPTION + INT8_NOTE["student"], tess)
    print(f"{int8.path}: agreement with float32 {json.dumps(int8.extra['quantization']['agreement'])}")
    for name, recs in training_sample(parts["train"]).items():
        probs = predict_probs(model, [load_audio(r.path) for r in recs], scfg.windowing)
        print(f"training speakers, {name} ({len(recs)} clips): UA {report_from_probs(probs, recs)['ua']:.3f}")


def training_sample(train: list, n: int = 300, seed: int = 0) -> dict[str, list]:
    """Up to n labeled training clips per corpus, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    by_corpus: dict[str, list] = {}
    for r in train:
        by_corpus.setdefault(r.corpus, []).append(r)
    return {c: [recs[i] for i in sorted(rng.permutation(len(recs))[:n])] for c, recs in by_corpus.items()}


if __name__ == "__main__":
    main()
