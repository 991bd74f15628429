"""The export layer's `ser` subcommand: export. Registered through the `ser.commands` entry
point (pyproject.toml); building the parser imports no torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.cli import HelpFormatter


def cmd_export(args: argparse.Namespace) -> int:
    from training.commands import cmd_export
    return cmd_export(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's student to an ONNX bundle, with test metrics and model card",
                       formatter_class=HelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="run folder written by `ser train`")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/student")
    p.add_argument("--name", default="litecnn-ravdess", help="bundle name")
    p.add_argument("--version", default="0.1.0", help="bundle version")
    p.set_defaults(func=cmd_export, needs_extra="train")
