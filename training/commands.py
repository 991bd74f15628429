"""The training layer's `ser` subcommands: train, evaluate, convert-whisper (parsers in
training/cli.py). Imported only when used.

A run folder (`--out runs/NAME`) is the hand-off between stages:
    records.csv   every utterance of the corpus (typed records)
    corpus.json   the corpus's name and licence, which its bundles carry
    split.json    the speaker-independent split (seed, speakers, counts)
    student/      student.pt, config.json, history.json
    eval/<name>/  metrics.json, report.md, confusion.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.config import resolve
from training.corpora import prepare_corpus, write_corpus_info
from training.records import read_records, write_records
from training.splits import apply_split, read_split, split_by_speaker, write_split


def prepare_run(args: argparse.Namespace, seed: int) -> tuple[list, object]:
    """records.csv + split.json in the run folder (reused when present, so stages resume)."""
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    if (run / "split.json").exists() and (run / "records.csv").exists():
        return read_records(run / "records.csv"), read_split(run / "split.json")
    kw = {"meta_dir": args.meta} if getattr(args, "meta", None) else {}
    records = prepare_corpus(args.corpus, args.data, **kw)
    split = split_by_speaker(records, val_speakers=args.val_speakers, test_speakers=args.test_speakers, seed=seed)
    write_records(records, run / "records.csv")
    write_split(split, run / "split.json")
    write_corpus_info(run, [(args.corpus, args.data)])
    return records, split


def run_parts(run: Path) -> dict[str, list]:
    """The records of each part (train / val / test) of a run folder made by `ser train`."""
    missing = [f for f in ("records.csv", "split.json") if not (run / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run}: no {' or '.join(missing)}; not a run folder (make one with "
                                f"`ser train --out {run}`)")
    return apply_split(read_records(run / "records.csv"), read_split(run / "split.json"))


def cmd_train(args: argparse.Namespace) -> int:
    from training.data import load_clips
    from training.train_student import train_student

    cfg = student_config(args)
    records, split = prepare_run(args, cfg.seed)
    parts = apply_split(records, split)
    data = {p: (load_clips(parts[p], trim=cfg.trim_silence, desc=p), [r.label for r in parts[p]])
            for p in ("train", "val")}
    t0 = time.time()
    train_student(cfg, data["train"], data["val"], Path(args.out) / "student")
    print(f"trained in {time.time() - t0:.0f} s -> {Path(args.out) / 'student' / 'student.pt'}")
    return 0


def student_config(args: argparse.Namespace):
    """StudentConfig: its defaults, then --config, then --seed and --epochs when given; alpha 1
    (no teacher: the student alone)."""
    from training.train_student import StudentConfig

    return resolve(StudentConfig, args, "seed", "epochs", alpha=1.0)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import bundle_probs, report_from_probs, write_report

    run = Path(args.run)
    records = run_parts(run)[args.part]
    target = args.bundle or args.checkpoint
    probs = bundle_probs(args.bundle, records) if args.bundle else checkpoint_probs(Path(args.checkpoint), records)
    rep = report_from_probs(probs, records)
    out = Path(args.out or run / "eval" / Path(target).name)
    write_report(rep, out, f"{Path(target).name} on the {args.part} speakers")
    print(json.dumps({k: rep[k] for k in ("n", "accuracy", "ua", "macro_f1", "ece")}))
    print(f"report: {out / 'report.md'}")
    return 0


def checkpoint_probs(path: Path, records: list):
    """(N, C) probabilities of a torch checkpoint (student .pt or teacher folder) through the same
    front end and windowing as the service."""
    from service.audio import load_audio
    from training.evaluate import predict_probs

    if path.suffix == ".pt":
        from training.train_student import load_student
        model, cfg = load_student(path)
        w = cfg.window()
    else:
        from training.teacher import load_teacher
        from training.train_teacher import served_window
        model, w = load_teacher(path), served_window(path)
    return predict_probs(model, [load_audio(r.path) for r in records], w["window_s"], w["hop_s"],
                         w["trim_silence"], w["pad"])


def cmd_convert_whisper(args: argparse.Namespace) -> int:
    from training.whisper_convert import convert_whisper

    out = convert_whisper(args.src, args.out, encoder_only=args.encoder_only, model=args.model)
    print(f"wrote a transformers Whisper checkpoint to {out}")
    return 0
