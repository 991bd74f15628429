"""One output row per input file, through /predict's code path (service.answer).

A file that cannot be read or decoded is a row with `error_code` and `error_message` and no
label; the codes are the API's (empty_audio, unsupported_audio, ...) plus `unreadable_file`
(the file cannot be opened) and `internal_error` (a bug; the message says what was raised).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from service.answer import Answer, ModelChoice, Models, segments, speech_fields
from service.audio import AudioError
from service.bundle import load_bundle
from service.inference import OnnxModel, rounded
from service.speech import SpeechGate
from scoring.inputs import SOURCE, is_uri

CARRIED_PREFIX = "manifest_"   # a manifest column named like an output column is carried as manifest_<name>


@dataclass(frozen=True)
class Options:
    """What every worker needs to score: picklable, so it travels to processes and Ray actors."""

    student: str
    teacher: str | None        # None: no teacher loaded
    model: ModelChoice
    fallback_threshold: float
    max_duration_s: float
    segments: bool
    labels: tuple[str, ...] | None = None   # the caller's label set (checked by `answer_labels`); None: all
    speech_gate: bool = True


def output_columns(labels: tuple[str, ...], with_segments: bool) -> list[pa.Field]:
    probs = pa.struct([(name, pa.float64()) for name in labels])
    speech = [("no_speech", pa.bool_()), ("speech_share", pa.float64())]
    segment = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("label", pa.string()),
                         ("confidence", pa.float64()), ("probabilities", probs), *speech])
    return [pa.field("path", pa.string()), pa.field("label", pa.string()), pa.field("confidence", pa.float64()),
            *[pa.field(f"prob_{name}", pa.float64()) for name in labels], *[pa.field(*f) for f in speech],
            pa.field("duration_s", pa.float64()), pa.field("model", pa.string()),
            pa.field("error_code", pa.string()), pa.field("error_message", pa.string()),
            *([pa.field("segments", pa.list_(segment))] if with_segments else [])]


def with_carried_names(table: pa.Table, reserved: set[str]) -> pa.Table:
    """Rename manifest columns that an output column would shadow (a training manifest's `label`)."""
    names = [n if n in ("path", SOURCE) or n not in reserved else CARRIED_PREFIX + n for n in table.column_names]
    return table.rename_columns(names)


def output_schema(labels: tuple[str, ...], with_segments: bool, carried: list[pa.Field]) -> pa.Schema:
    return pa.schema(output_columns(labels, with_segments) + carried)


def bundle_labels(options: Options) -> tuple[str, ...]:
    """The label set of the bundles `options` names; student and teacher must agree on it.
    Checks them (sha256 included) before any worker starts, so that a bad bundle is one clear error."""
    labels = load_bundle(options.student).labels
    if options.teacher is not None and load_bundle(options.teacher).labels != labels:
        raise ValueError(f"{options.teacher} and {options.student} have different label sets")
    return labels


def answer_labels(options: Options) -> tuple[str, ...]:
    """The labels the rows answer over: the caller's subset, else the bundles' own."""
    return options.labels or bundle_labels(options)


class Scorer:
    """One worker's sessions (one onnxruntime thread each) and the rows they give."""

    def __init__(self, options: Options, schema: pa.Schema):
        student = OnnxModel(load_bundle(options.student))
        teacher = OnnxModel(load_bundle(options.teacher)) if options.teacher else None
        gate = SpeechGate() if options.speech_gate else None
        self.models = Models(student, teacher, options.fallback_threshold, gate)
        self.options, self.schema = options, schema
        produced = {f.name for f in output_columns(options.labels or student.bundle.labels, options.segments)}
        self.carried = [f.name for f in schema if f.name not in produced]
        self._filesystems: dict[str, tuple[pafs.FileSystem, str]] = {}   # scheme://host -> (fs, prefix)

    def table(self, items: list[dict]) -> pa.Table:
        return pa.Table.from_pylist([self.row(item) for item in items], schema=self.schema)

    def row(self, item: dict) -> dict:
        carried = {name: item.get(name) for name in self.carried}
        try:
            answer = self.models.answer(self.read(item[SOURCE]), self.options.model,
                                        max_duration_s=self.options.max_duration_s, labels=self.options.labels)
        except AudioError as e:
            return {"path": item["path"], "error_code": e.code, "error_message": e.message, **carried}
        except OSError as e:
            return {"path": item["path"], "error_code": "unreadable_file", "error_message": str(e), **carried}
        except Exception as e:   # noqa: BLE001  one file's bug must not end a run over millions
            return {"path": item["path"], "error_code": "internal_error",
                    "error_message": f"{type(e).__name__}: {e}", **carried}
        return {"path": item["path"], **self._result(answer), **carried}

    def _result(self, a: Answer) -> dict:
        p, b = a.prediction, a.model.bundle
        row = {"label": p.label, "confidence": None if p.no_speech else rounded(p.confidence),
               **{f"prob_{name}": rounded(v) for name, v in p.probabilities.items()},   # none without speech
               **speech_fields(p.no_speech, p.speech_share),
               "duration_s": round(a.duration_s, 4), "model": f"{b.name}/{b.version}/{b.precision}"}
        if self.options.segments:
            row["segments"] = segments(a)
        return row

    def read(self, source: str) -> bytes:
        """The bytes of a local path or of a pyarrow filesystem URI (s3://bucket/key, gs://, hdfs://...)."""
        if not is_uri(source):
            return Path(source).read_bytes()
        scheme, rest = source.split("://", 1)
        root = f"{scheme}://{rest.split('/', 1)[0]}"
        if root not in self._filesystems:   # resolving an object store (its region) costs a round trip: once
            fs, path = pafs.FileSystem.from_uri(source)
            self._filesystems[root] = (fs, source[:len(source) - len(path)])   # what the URI adds to a path
        fs, prefix = self._filesystems[root]
        with fs.open_input_stream(source[len(prefix):]) as f:
            return f.read()
