"""`ser`: one command line for serving, predicting, training, exporting and evaluating.

Each layer registers its own subcommands. This module adds `serve`, `predict` and `stream`, which need
only the serving extras; the `training` and `export` packages add theirs through the
`ser.commands` entry points declared in pyproject.toml, so this torch-free layer never imports
them. A subcommand that needs an extra says which (`needs_extra`) and gets a one-line message
instead of a traceback when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from service.shipped import MODELS_HELP

COMMANDS_GROUP = "ser.commands"   # entry points: NAME = "package.module:register"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, a switch's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


# Flags that set a Settings field. Precedence: Settings' defaults, then SER_* variables, then
# the flags given (argparse default None: an absent flag leaves the variable's value).
SETTING_FLAGS = {"student": "student_bundle", "teacher": "teacher_bundle", "bundle": "student_bundle",
                 "threads": "intra_op_threads", "fallback_threshold": "fallback_threshold", "workers": "workers"}


def settings_from(args: argparse.Namespace):
    from pydantic import ValidationError

    from service.settings import Settings, settings_problems

    try:
        return Settings(**{field: getattr(args, flag) for flag, field in SETTING_FLAGS.items()
                           if getattr(args, flag, None) is not None})
    except ValidationError as e:
        raise ValueError(settings_problems(e)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from service.server import serve

    return serve(settings_from(args), args.host, args.port)


def cmd_predict(args: argparse.Namespace) -> int:
    from service.answer import Models
    from service.audio import AudioError, load_audio
    from service.bundle import load_bundle
    from service.errors import error_body
    from service.inference import OnnxModel
    from service.schemas import answer_fields
    from service.speech import SpeechGate

    settings = settings_from(args)
    threads = settings.intra_op_threads
    student = OnnxModel(load_bundle(settings.student_folder()), intra_threads=threads)
    gate = SpeechGate(intra_threads=threads) if settings.speech_gate else None
    models = Models(student, None, settings.fallback_threshold, gate)
    status = 0
    for f in args.files:
        try:   # the line /predict answers, with the file's name
            answer = models.answer(load_audio(Path(f)), "student", max_duration_s=None)
            print(json.dumps({"file": f, **answer_fields(answer, top_k=3, segments=False)}))
        except (AudioError, OSError) as e:   # the API's error form; a file that cannot be opened as `ser score` says it
            code = e.code if isinstance(e, AudioError) else "unreadable_file"
            print(json.dumps({"file": f, **error_body(code, str(e))}))
            status = 1
    return status


def cmd_stream(args: argparse.Namespace) -> int:
    from service.stream_client import run

    return run(args)


def register(sub: argparse._SubParsersAction) -> None:
    """The serving layer's subcommands."""
    p = sub.add_parser("serve", help="run the HTTP service (settings also from SER_* variables)",
                       formatter_class=HelpFormatter, epilog=MODELS_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port; the ready line names it)")
    p.add_argument("--student", type=Path, help="student bundle folder (default: SER_STUDENT_BUNDLE, or the shipped one)")
    p.add_argument("--teacher", type=Path, help="teacher bundle folder, or 'none' for the student alone "
                   "(default: SER_TEACHER_BUNDLE, or the shipped one)")
    p.add_argument("--workers", type=int, help="processes answering on the port, each with its own copy of "
                   "the limits; 0: one per CPU this process may use (default: SER_WORKERS, or 0)")
    p.set_defaults(func=cmd_serve, needs_extra="serve")

    p = sub.add_parser("predict", help="predict the emotion of audio files with a bundle (one JSON line each)",
                       formatter_class=HelpFormatter, epilog=MODELS_HELP)
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files: WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3")
    p.add_argument("--bundle", type=Path, help="bundle folder (default: SER_STUDENT_BUNDLE, or the shipped student)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: SER_INTRA_OP_THREADS, as for serve)")
    p.set_defaults(func=cmd_predict, needs_extra="serve")

    p = sub.add_parser("stream", help="stream a file (or the microphone) to a server's /stream; one line per event",
                       formatter_class=HelpFormatter)
    p.add_argument("file", nargs="?", type=Path, metavar="FILE", help="audio file: WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3")
    p.add_argument("--mic", action="store_true", help="stream the default microphone instead (needs the 'mic' extra)")
    p.add_argument("--seconds", type=float, help="with --mic: stop after this long (default: at Ctrl-C)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    p.add_argument("--model", choices=["student", "teacher", "auto"], default="student",
                   help="auto: the teacher answers the windows the student is unsure of")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between windows")
    p.add_argument("--top-k", type=int, default=3, help="labels listed per event (with --json)")
    p.add_argument("--labels", help="answer over these labels only, comma-separated (e.g. angry,happy,neutral,sad)")
    p.add_argument("--speed", type=float, default=1.0, help="FILE at this many times real time; 0: as fast as possible")
    p.add_argument("--api-key", help="the server's key (default: SER_API_KEY)")
    p.add_argument("--json", action="store_true", help="print each event as the server sends it, one JSON line")
    p.set_defaults(func=cmd_stream, needs_extra="serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition by knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            register_layer = ep.load()
        except ModuleNotFoundError as e:
            if e.name != ep.module.split(".")[0]:
                raise
            continue   # that layer is not installed (the serving image ships only service/)
        register_layer(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModuleNotFoundError as e:
        extra = getattr(args, "needs_extra", None)
        if extra is None:
            raise
        print(f"ser {args.command}: error: the Python module {e.name!r} is missing; this command needs the "
              f"'{extra}' extras: pip install 'speech-emotion-distill[{extra}]' (in a checkout: "
              f"pip install -e '.[{extra}]')", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as e:   # BundleError, AudioError and bad input files included
        print(f"ser {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
