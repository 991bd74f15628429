"""A team's own corpus, described by a CSV manifest -> Utterance records.

Raw layout::

    corpus/manifest.csv        path,label,speaker[,sex][,id]
    corpus/<any audio files>

- ``path``: an audio file; a relative path resolves against the CSV's folder.
- ``label``: one of ``service.labels.LABELS`` (angry, disgust, fear, happy, sad, neutral).
- ``speaker``: who speaks; splits keep each speaker in one part, so it must be filled in.
- ``sex`` (optional): ``male`` | ``female`` | empty (unknown); used to balance splits.
- ``id`` (optional): a stable unique id; defaults to ``path`` as written.

A ``LICENSE`` (or ``LICENSE.txt``) file beside the CSV states the corpus's licence: its first
line goes into the model card of every bundle trained on it.

Records: corpus ``manifest`` (or the `corpus` argument), id ``<corpus>:<id>``, speaker
``<corpus>:<speaker>``, absolute path. Every bad row is collected first; one ValueError then
lists the first few with their row numbers (row 1 is the header).
"""

from __future__ import annotations

from pathlib import Path

from service.labels import LABELS
from training.corpora.tables import read_table
from training.records import Utterance

REQUIRED_COLUMNS = ("path", "label", "speaker")
SEXES = ("male", "female", "")
MAX_LISTED = 5  # problems quoted in an error message
LICENSE_FILES = ("LICENSE", "LICENSE.txt")


def prepare_manifest(csv_path: str | Path, *, corpus: str = "manifest") -> list[Utterance]:
    """Read a ``path,label,speaker[,sex][,id]`` CSV into records (in file order).

    Raises FileNotFoundError for a missing CSV and ValueError for missing columns or bad
    rows (unknown label, missing audio file, empty speaker, bad sex, duplicate id).
    """
    csv_path = Path(csv_path).resolve()
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest {csv_path} does not exist")
    if not corpus or ":" in corpus:
        raise ValueError(f"corpus name {corpus!r}; expected a non-empty name without ':'")
    rows = read_table(csv_path, REQUIRED_COLUMNS)   # + optional sex, id
    if not rows:
        raise ValueError(f"{csv_path}: no rows; expected one row per audio file")

    records, problems, seen, sex_of = [], [], {}, {}
    for n, row in enumerate(rows, start=2):
        rel = (row["path"] or "").strip()
        label = (row["label"] or "").strip()
        speaker = (row["speaker"] or "").strip()
        sex = (row.get("sex") or "").strip().lower()
        uid = (row.get("id") or "").strip() or rel
        path = (csv_path.parent / rel).resolve()
        bad = []
        if not rel:
            bad.append("empty path")
        elif not path.is_file():
            bad.append(f"file {rel!r} not found (looked at {path})")
        if label not in LABELS:
            bad.append(f"label {label!r} is not one of {', '.join(LABELS)}")
        if not speaker:
            bad.append("empty speaker")
        if sex not in SEXES:
            bad.append(f"sex {row.get('sex')!r}; expected male, female or empty")
        if sex and sex_of.setdefault(speaker, (sex, n))[0] != sex:
            first_sex, first_row = sex_of[speaker]
            bad.append(f"speaker {speaker!r} is {sex} here but {first_sex} in row {first_row}")
        if uid and uid in seen:
            bad.append(f"id {uid!r} repeats row {seen[uid]}")
        seen.setdefault(uid, n)
        if bad:
            problems.append(f"row {n}: " + ", ".join(bad))
            continue
        records.append(Utterance(id=f"{corpus}:{uid}", path=str(path),
                                 speaker=f"{corpus}:{speaker}", label=label,
                                 corpus=corpus, sex=sex))
    raise_problems(csv_path, problems)
    return records


def manifest_license(csv_path: str | Path | None = None) -> dict[str, str]:
    """The corpus's licence: the first line of a LICENSE (or LICENSE.txt) file beside the CSV."""
    folder = Path(csv_path).parent if csv_path else None
    found = next((f for f in (folder / n for n in LICENSE_FILES) if f.is_file()), None) if folder else None
    if found is None:
        return {"data": f"not stated (no {' or '.join(LICENSE_FILES)} file beside the manifest)",
                "weights": "not stated: the training data's licence terms apply"}
    first = next((line.strip() for line in found.read_text().splitlines() if line.strip()), "")
    return {"data": f"{first} ({found.name} of the corpus)",
            "weights": f"trained on data under: {first}; its terms apply"}


def raise_problems(where: str | Path, problems: list[str]) -> None:
    """Raise one ValueError quoting the first few `problems` found in `where`, if any."""
    if problems:
        n = len(problems)
        more = f"; ... and {n - MAX_LISTED} more" if n > MAX_LISTED else ""
        raise ValueError(f"{where}: {n} bad entr{'y' if n == 1 else 'ies'}: "
                         + "; ".join(problems[:MAX_LISTED]) + more)

