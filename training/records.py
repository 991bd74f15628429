"""The typed utterance record every corpus adapter yields."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from service.labels import LABELS


@dataclass(frozen=True)
class Utterance:
    id: str            # unique within the corpus, stable across runs (used as a cache key)
    path: str          # absolute path of the audio file
    speaker: str       # corpus-qualified speaker id, e.g. "ravdess:01"
    label: str | None  # one of service.labels.LABELS; None: a clip outside the six classes
                       # (unlabeled: a distilled student learns from its teacher soft labels only)
    corpus: str
    sex: str = ""      # "male" | "female" | "" (unknown)
    intensity: str = ""
    text: str = ""     # what is said, where the corpus gives it

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"utterance {self.id}: unknown label {self.label!r}; expected one of {LABELS}")
        if not self.speaker:
            raise ValueError(f"utterance {self.id}: empty speaker id")


def write_records(records: list[Utterance], path: str | Path) -> None:
    """Write records as CSV (one row per utterance, columns = record fields). The file is
    complete or absent: a run reading it beside one writing it never sees half of it."""
    names = [f.name for f in fields(Utterance)]
    tmp = Path(f"{path}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        w.writerows({**asdict(r), "label": r.label or ""} for r in records)
    tmp.replace(path)


def read_records(path: str | Path) -> list[Utterance]:
    with open(path, newline="") as f:
        return [Utterance(**{**row, "label": row["label"] or None}) for row in csv.DictReader(f)]
