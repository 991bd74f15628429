"""`ser score`: a label for every file of an archive, written to a table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from service.cli import HelpFormatter
from service.shipped import MODELS_HELP

ROW_GROUP = 1000    # rows per row group: what a kill -9 can lose at most
FLUSH_S = 60.0      # ... and at most this much work on a slow model


def cmd_score(args: argparse.Namespace) -> int:
    import pyarrow as pa   # noqa: F401  (the `score` extras: a one-line message when missing)

    from scoring import inputs as inp, sinks
    from scoring.progress import Progress
    from scoring.rows import answer_labels, output_columns, output_schema, with_carried_names

    fmt = sinks.format_for(args.out, args.format)
    if args.engine == "ray" and fmt != "parquet":
        raise ValueError("--engine ray writes Parquet only: name --out a folder (a Parquet dataset)")
    options = _options(args)
    labels = answer_labels(options)
    found = inp.collect(args.inputs)
    reserved = {f.name for f in output_columns(labels, args.segments)}
    table = with_carried_names(found.table, reserved)
    schema = output_schema(labels, args.segments, [f for f in table.schema if f.name not in ("path", inp.SOURCE)])
    say = (lambda *a: None) if args.quiet else (lambda msg: print(f"ser score: {msg}", file=sys.stderr))
    if fmt == "parquet" and (note := sinks.dataset_note(args.out)):
        say(note)
    if found.other_files:
        say(f"left out {_files(found.other_files)} in the folders whose extension is not audio "
            f"({' '.join(inp.AUDIO_EXTENSIONS)})")
    if found.duplicates:
        say(f"{_files(found.duplicates)} named more than once: each is scored once")

    if args.engine == "ray":
        return _score_on_ray(args, options, table, schema, say)
    from scoring import local

    sink = sinks.open_sink(args.out, fmt, schema, resume=args.resume)
    todo = inp.without(table, sink.done)
    if sink.done:
        say(f"resuming: {len(table) - len(todo)} of {len(table)} files are already in {args.out}")
    workers = max(1, min(args.workers or len(os.sched_getaffinity(0)), len(todo)))
    progress = Progress(len(todo), quiet=args.quiet)
    try:
        finished = local.run(todo, options, schema, sink, workers=workers, row_group=args.row_group,
                             flush_s=FLUSH_S, progress=progress)
    except KeyboardInterrupt:   # a second Ctrl-C: the rows gathered so far are written, the running ones dropped
        finished = False
    finally:
        sink.close()
    say(f"{progress.line()}; written to {args.out}")
    if not finished:
        say("stopped; what was scored is kept: run the same command with --resume to go on")
        return 130
    return 0


def _score_on_ray(args, options, table, schema, say) -> int:
    args.needs_extra = "scale"   # a missing ray is the `scale` extras' to install
    from scoring import inputs as inp, ray_engine, sinks

    workers = ray_engine.start(args.ray_address, args.workers, args.quiet)
    done = sinks.paths_in_folder(args.out) if args.resume else set()
    if not args.resume and sinks.folder_has_files(args.out):
        raise ValueError(f"{args.out} exists; pass --resume to add the files it lacks, or remove it")
    todo = inp.without(table, done)
    if done:
        say(f"resuming: {len(table) - len(todo)} of {len(table)} files are already in {args.out}")
    if len(todo):
        ray_engine.run(todo, options, schema, args.out, workers=workers,
                       files_per_batch=args.files_per_batch, rows_per_file=args.row_group)
    say(f"{len(todo)} files scored on Ray by {workers} actors; written to {args.out}")
    return 0


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _options(args: argparse.Namespace):
    from scoring.rows import Options
    from service.bundle import load_bundle
    from service.cli import settings_from
    from service.labels import parse_label_set

    s = settings_from(args)   # the service's defaults, then SER_* variables, then the flags given
    teacher = s.teacher_folder() if args.model != "student" else None
    if args.model == "teacher" and teacher is None:
        raise ValueError(f"--model teacher: no teacher (SER_TEACHER_BUNDLE=none, or no teacher/ in {s.models_dir}); "
                         "pass --teacher")
    labels = parse_label_set(args.labels, load_bundle(s.student_folder()).labels) if args.labels else None
    return Options(student=str(s.student_folder()), teacher=str(teacher) if teacher else None, model=args.model,
                   fallback_threshold=s.fallback_threshold, max_duration_s=args.max_duration_s,
                   segments=args.segments, labels=labels, speech_gate=s.speech_gate)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", formatter_class=HelpFormatter,
                       help="score every file of an archive into a Parquet, CSV or JSON-lines table",
                       description="One row per input file: its path (absolute, or as a manifest gives it), label, "
                                   "confidence, every label's probability, no_speech and speech_share (a file "
                                   "without speech has no label), duration, model, and error_code/error_message "
                                   "for a file that cannot be used.", epilog=MODELS_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (recursive: .wav .flac .ogg .opus .mp3), globs ('calls/**/*.wav'), "
                        "pyarrow filesystem URIs (s3://bucket/calls/), or CSV/Parquet manifests with a 'path' "
                        "column (relative to the manifest; its other columns are carried to the output)")
    p.add_argument("--out", required=True,
                   help="output: a folder, written as a Parquet dataset (part files that read as one table), "
                        "or one .csv or .jsonl file")
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), help="default: from the extension of --out")
    p.add_argument("--model", choices=("student", "teacher", "auto"), default="student",
                   help="auto: the student, and the teacher below the fallback threshold, as /predict")
    p.add_argument("--student", type=Path, help="student bundle folder (default: SER_STUDENT_BUNDLE, or the shipped one)")
    p.add_argument("--teacher", type=Path, help="teacher bundle folder, or 'none' (default: SER_TEACHER_BUNDLE, "
                   "or the shipped one)")
    p.add_argument("--fallback-threshold", type=float,
                   help="auto asks the teacher where the student's logit margin is below this (default: SER_FALLBACK_THRESHOLD, else the shipped value)")
    p.add_argument("--segments", action="store_true", help="add per-window results as a list column")
    p.add_argument("--labels", help="answer over these labels only, comma-separated (e.g. angry,happy,neutral,sad): "
                                    "probabilities renormalised over them, as /predict?labels=")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: a process pool on this machine; ray: a Ray Data pipeline (extra [scale])")
    p.add_argument("--workers", type=int, help="worker processes or Ray actors (default: the cores, or the cluster's CPUs)")
    p.add_argument("--resume", action="store_true", help="skip the paths already in --out and add the rest")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: RAY_ADDRESS, or a local Ray)")
    p.add_argument("--max-duration-s", type=float, default=3600.0,
                   help="longer files get an audio_too_long row (a worker holds about 0.2 MB per second of audio)")
    p.add_argument("--row-group", type=int, default=ROW_GROUP, help="rows per row group (Parquet part / fsync)")
    p.add_argument("--files-per-batch", type=int, default=16, help="files per Ray actor call")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_score, needs_extra="score")
