"""The pipeline layer's `ser` subcommand: pipeline. Registered through the `ser.commands`
entry point (pyproject.toml); building the parser imports no torch, running the command does."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.cli import HelpFormatter
from training.cli import corpus_args


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.run import PipelineConfig, run_pipeline_command

    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    cfg = PipelineConfig(**{**overrides, "folds": args.folds, "run_folds": args.run_folds, "backbone": args.backbone or
                            overrides.get("backbone", PipelineConfig.backbone), "seed": args.seed,
                            "val_speakers": args.val_speakers})
    kw = {"meta_dir": args.meta} if args.meta else {}
    summary = run_pipeline_command(args.corpus, args.data, args.out, cfg, final=args.final, **kw)
    print((Path(args.out) / "report.md").read_text())
    where = "final/bundles (trained on every speaker)" if args.final else "fold0/bundles"
    print(f"pipeline finished in {summary['seconds']} s; bundles in {args.out}/{where}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", formatter_class=HelpFormatter,
                       help="split -> teacher -> student alone -> distilled student -> bundles -> report")
    corpus_args(p)
    p.add_argument("--folds", type=int, default=4,
                   help="k-fold by speaker: the estimate of the recipe (--final trains the models to ship)")
    p.add_argument("--backbone", help="teacher backbone: whisper-base or whisper-tiny.en (built in), a hub id or a "
                                      "local folder (default: the config's, else PipelineConfig.backbone)")
    p.add_argument("--config", type=Path,
                   help="JSON with PipelineConfig overrides (alpha, kd_temperature, teacher, student, cross)")
    p.add_argument("--run-folds", type=int, nargs="+", metavar="I",
                   help="train and score only these folds (0-based) of the k: a quicker, noisier estimate")
    p.add_argument("--final", action="store_true",
                   help="after the k folds, train the models to ship on every speaker (in OUT/final/bundles)")
    p.set_defaults(func=cmd_pipeline, needs_extra="train")
