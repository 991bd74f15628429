"""nEMO (Christop 2024), acted Polish emotional speech -> Utterance records.

Layout (what ``../shared/data/nemo`` holds: 16 kHz mono FLAC converted from the 24 kHz WAV)::

    root/manifest.csv        path,speaker,sex,age,label,text,sample_rate,duration_s
    root/EB0/EB0_anger_1.flac
    ...

``label`` is already in the project's names (angry, fear, happy, neutral, sad) or
``surprised``. nEMO has no disgust: a model trained on it learns disgust from other corpora.
Each clip is a different everyday sentence (``text``), unlike RAVDESS's two fixed ones.
``surprised`` lies outside the six classes: those clips are offered as unlabeled transfer
clips (``nemo_transfer_clips``), as RAVDESS offers calm and surprised.

Records: id ``nemo:<file stem>``, speaker ``nemo:<speaker code>``, absolute path, sex, text.
"""

from __future__ import annotations

from pathlib import Path

from service.labels import LABELS
from training.corpora.manifest import raise_problems
from training.corpora.tables import read_table
from training.records import Utterance

CORPUS = "nemo"
OUTSIDE = ("surprised",)   # nEMO's label outside the six classes
LICENSE: dict[str, str] = {
    "data": "nEMO (Christop 2024, LREC-COLING 2024), CC BY-NC-SA 4.0",
    "weights": "CC BY-NC-SA 4.0 (trained on nEMO: non-commercial, share-alike)",
}
_COLUMNS = ("path", "speaker", "sex", "label", "text")


def prepare_nemo(root: str | Path) -> list[Utterance]:
    """The six-class clips of nEMO under `root` (sorted by id)."""
    return [r for r in _read(root) if r.label is not None]


def nemo_transfer_clips(root: str | Path) -> list[Utterance]:
    """The clips outside the six classes (surprised), unlabeled (``label=None``)."""
    return [r for r in _read(root) if r.label is None]


def nemo_license(root: str | Path | None = None) -> dict[str, str]:
    return dict(LICENSE)


def _read(root: str | Path) -> list[Utterance]:
    root = Path(root).resolve()
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found; expected the nEMO layout (see training.corpora.nemo)")
    rows = read_table(manifest, _COLUMNS)
    records, problems = [], []
    for n, row in enumerate(rows, start=2):   # row 1 is the header
        path, label = (root / row["path"]).resolve(), row["label"].strip()
        sex, speaker = row["sex"].strip().lower(), row["speaker"].strip()
        if not path.is_file():
            problems.append(f"row {n}: {row['path']!r} does not exist")
        elif label not in LABELS and label not in OUTSIDE:
            problems.append(f"row {n}: label {label!r}; expected one of {[*LABELS, *OUTSIDE]}")
        elif not speaker:
            problems.append(f"row {n}: empty speaker")
        elif sex not in ("male", "female"):
            problems.append(f"row {n}: sex {row['sex']!r}; expected male or female")
        else:
            records.append(Utterance(id=f"{CORPUS}:{path.stem}", path=str(path), speaker=f"{CORPUS}:{speaker}",
                                     label=label if label in LABELS else None, corpus=CORPUS, sex=sex,
                                     text=row["text"].strip()))
    raise_problems(manifest, problems)
    return sorted(records, key=lambda r: r.id)
