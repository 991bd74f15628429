"""The export layer's `ser` subcommand: export. Registered through the `ser.commands` entry
point (pyproject.toml); building the parser imports no torch, running the command does."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.bundle import DEFAULT_VERSION
from service.cli import HelpFormatter


def cmd_export(args: argparse.Namespace) -> int:
    from export.bundles import STUDENT_DESCRIPTION, export_bundle, split_info, student_name
    from training.corpora import read_corpus_info
    from training.runs import run_parts
    from training.train_student import load_student

    run = Path(args.run)
    if not (run / "student" / "student.pt").is_file():
        raise FileNotFoundError(f"{run / 'student' / 'student.pt'}: no trained student; run `ser train --out {run}` first")
    model, cfg = load_student(run / "student" / "student.pt")
    parts = run_parts(run)
    info = {**split_info(run, parts), "config": json.loads((run / "student" / "config.json").read_text())}
    corpus = read_corpus_info(run)
    bundle, rep = export_bundle(model, Path(args.out), role="student", name=args.name or student_name(corpus),
                                version=args.version, windowing=cfg.windowing, parts=parts, training=info,
                                license=corpus["license"], description=STUDENT_DESCRIPTION,
                                eval_dir=run / "eval" / Path(args.out).name)
    print(f"wrote {bundle.path}: test UA {rep['ua']:.3f}, accuracy {rep['accuracy']:.3f}, "
          f"T={bundle.temperature:.2f}, sha256 {bundle.sha256[:12]}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's student to an ONNX bundle, with test metrics and model card",
                       formatter_class=HelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="run folder written by `ser train`")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/student")
    p.add_argument("--name", help="bundle name (default: litecnn-CORPUS, the run's corpus)")
    p.add_argument("--version", default=DEFAULT_VERSION, help="bundle version")
    p.set_defaults(func=cmd_export, needs_extra="train")
