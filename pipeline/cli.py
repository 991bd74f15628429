"""The pipeline layer's `ser` subcommand: pipeline. Registered through the `ser.commands`
entry point (pyproject.toml); building the parser imports no torch, running the command does.

Settings come from PipelineConfig's defaults, then the --config file, then the flags given."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.cli import HelpFormatter
from training.config import from_dict, given, read_config
from training.corpora import CORPORA

FLAGS = ("folds", "run_folds", "backbone", "seed", "val_speakers")   # PipelineConfig fields with a flag


def pipeline_config(args: argparse.Namespace):
    from pipeline.run import PipelineConfig

    d = read_config(args.config)
    if args.corpus or args.data:
        if not (args.corpus and args.data):
            raise SystemExit("ser pipeline: --corpus and --data go together (or give corpora in --config)")
        d["corpora"] = [{"name": args.corpus, "root": args.data}]
    return from_dict(PipelineConfig, {**d, **given(args, *FLAGS)})


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.run import run_pipeline_command

    if args.dry_run:
        from pipeline.plan import plan_pipeline

        print(plan_pipeline(pipeline_config(args), args.out, final=args.final))
        return 0
    summary = run_pipeline_command(pipeline_config(args), args.out, final=args.final)
    print((Path(args.out) / "report.md").read_text())
    where = "final/bundles (trained on every speaker)" if args.final else "<split>/bundles"
    print(f"pipeline finished in {summary['seconds']} s; bundles in {args.out}/{where}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", formatter_class=HelpFormatter,
                       help="splits -> teacher -> student alone -> distilled student -> bundles -> report")
    p.add_argument("--config", type=Path, help="JSON with PipelineConfig settings (corpora, cross, teacher, student, ...)")
    p.add_argument("--corpus", choices=sorted(CORPORA), help="one corpus adapter instead of the config's corpora")
    p.add_argument("--data", help="that corpus's folder (manifest: the CSV file)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/multi")
    p.add_argument("--folds", type=int, help="k-fold by speaker within every corpus (default: the config's, else "
                                             "PipelineConfig.folds)")
    p.add_argument("--run-folds", type=int, nargs="+", metavar="I",
                   help="train and score only these folds (0-based) of the k: a quicker, noisier estimate")
    p.add_argument("--backbone", help="teacher backbone: whisper-base or whisper-tiny.en (built in), a hub id or a "
                                      "local folder (default: the config's, else PipelineConfig.backbone)")
    p.add_argument("--seed", type=int, help="seed of the splits and of training (default: the config's, else "
                                            "PipelineConfig.seed)")
    p.add_argument("--val-speakers", type=int, help="validation speakers per corpus and split (default: 10 %%)")
    p.add_argument("--final", action="store_true",
                   help="after the splits, train the models to ship on every speaker (in OUT/final/bundles)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved configuration, the corpora found and the plan (splits, stages, "
                        "what is already done in OUT), then exit without training")
    p.set_defaults(func=cmd_pipeline, needs_extra="train")
