"""RAVDESS speech (Livingstone & Russo 2018) -> Utterance records.

Raw layout, either of:

1. A converted copy with a manifest (what ``../shared/data/ravdess`` holds)::

       root/manifest.csv              path,actor,sex,emotion,intensity,statement,repetition,
                                      sample_rate,duration_s   (path relative to root)
       root/Actor_01/03-01-01-01-01-01-01.flac
       ...

2. The original download, no manifest::

       root/Actor_01/03-01-05-02-01-01-01.wav     (or .flac)
       ...

   A file name is seven two-digit fields ``MM-VV-EE-II-SS-RR-AA``: modality (01 audio-video,
   02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral,
   02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity
   (01 normal, 02 strong), statement (01, 02), repetition (01, 02), actor (01-24; odd =
   male, even = female). The actor in the name must match its ``Actor_XX`` folder.

Only audio-only speech (``03-01-...``) is used: song clips found in the tree are excluded
and counted. ``calm`` and ``surprised`` lie outside the 6-class task and are excluded (the
count goes to the log); ``calm_as_neutral=True`` maps calm to neutral instead, an explicit
choice that changes the class balance (neutral then has 3x the clips of the original).

Records: id ``ravdess:<file stem>``, speaker ``ravdess:<actor, two digits>``, absolute path,
sex, intensity (``normal`` | ``strong``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from training.corpora.manifest import raise_problems
from training.corpora.tables import read_table
from training.records import Utterance

log = logging.getLogger(__name__)

CORPUS = "ravdess"
AUDIO_SUFFIXES = (".wav", ".flac")
# What a bundle trained on RAVDESS must say about its data and, through it, its weights.
LICENSE: dict[str, str] = {
    "data": "RAVDESS (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391), CC BY-NC-SA 4.0",
    "weights": "CC BY-NC-SA 4.0 (trained on RAVDESS: non-commercial, share-alike)",
}

# RAVDESS emotion names (as in the manifest) by file-name code.
EMOTION_CODES: dict[str, str] = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
# RAVDESS emotion -> project label; calm and surprised have no project label.
EMOTION_LABELS: dict[str, str] = {
    "neutral": "neutral", "happy": "happy", "sad": "sad",
    "angry": "angry", "fearful": "fear", "disgust": "disgust",
}
INTENSITY_CODES: dict[str, str] = {"01": "normal", "02": "strong"}

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_MANIFEST_COLUMNS = ("path", "actor", "sex", "emotion", "intensity")


def prepare_ravdess(root: str | Path, *, calm_as_neutral: bool = False) -> list[Utterance]:
    """Read RAVDESS speech under `root` into records (sorted by id).

    Uses ``root/manifest.csv`` when present, else parses the original file names.
    Raises ValueError for malformed names or manifest rows and for listed files that
    are missing; FileNotFoundError when `root` holds neither a manifest nor audio.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"RAVDESS root {root} is not a folder")
    manifest = root / "manifest.csv"
    rows = _rows_from_manifest(manifest) if manifest.is_file() else _rows_from_names(root)

    labels = dict(EMOTION_LABELS)
    if calm_as_neutral:
        labels["calm"] = "neutral"
    records, excluded = [], Counter()
    for row in rows:
        label = labels.get(row["emotion"])
        if label is None:
            excluded[row["emotion"]] += 1
            continue
        records.append(Utterance(
            id=f"{CORPUS}:{row['stem']}",
            path=str(row["path"]),
            speaker=f"{CORPUS}:{row['actor']}",
            label=label,
            corpus=CORPUS,
            sex=row["sex"],
            intensity=row["intensity"],
        ))
    if excluded:
        log.info("ravdess: excluded %d clips outside the 6 classes (%s)%s",
                 sum(excluded.values()), _fmt_counts(excluded),
                 "" if calm_as_neutral else "; calm_as_neutral=True keeps calm as neutral")
    _check_unique_ids(records)
    records.sort(key=lambda r: r.id)
    log.info("ravdess: %d clips, %d actors from %s", len(records),
             len({r.speaker for r in records}), root)
    return records


def ravdess_license(root: str | Path | None = None) -> dict[str, str]:
    return dict(LICENSE)


def ravdess_transfer_clips(root: str | Path) -> list[Utterance]:
    """The clips outside the 6 classes (calm, surprised), unlabeled (``label=None``): a distilled
    student learns from the teacher's soft labels on them."""
    root = Path(root).resolve()
    manifest = root / "manifest.csv"
    rows = _rows_from_manifest(manifest) if manifest.is_file() else _rows_from_names(root)
    return sorted((Utterance(id=f"{CORPUS}:{row['stem']}", path=str(row["path"]), speaker=f"{CORPUS}:{row['actor']}",
                             label=None, corpus=CORPUS, sex=row["sex"], intensity=row["intensity"])
                   for row in rows if row["emotion"] not in EMOTION_LABELS), key=lambda r: r.id)


def _rows_from_manifest(manifest: Path) -> list[dict]:
    root = manifest.parent
    raw = read_table(manifest, _MANIFEST_COLUMNS)

    rows, problems = [], []
    for n, r in enumerate(raw, start=2):  # row 1 is the header
        path = (root / r["path"]).resolve()
        actor = r["actor"].strip().zfill(2)
        emotion = r["emotion"].strip()
        sex = r["sex"].strip().lower()
        intensity = r["intensity"].strip()
        if not path.is_file():
            problems.append(f"row {n}: {r['path']!r} does not exist")
        elif emotion not in EMOTION_CODES.values():
            problems.append(f"row {n}: emotion {emotion!r}; expected one of "
                            f"{sorted(EMOTION_CODES.values())}")
        elif not actor.isdigit():
            problems.append(f"row {n}: actor {r['actor']!r}; expected a number like 01")
        elif sex not in ("male", "female"):
            problems.append(f"row {n}: sex {r['sex']!r}; expected male or female")
        elif intensity not in INTENSITY_CODES.values():
            problems.append(f"row {n}: intensity {intensity!r}; expected normal or strong")
        else:
            rows.append(dict(path=path, stem=path.stem, actor=actor, sex=sex,
                             emotion=emotion, intensity=intensity))
    raise_problems(manifest, problems)
    return rows


def _rows_from_names(root: Path) -> list[dict]:
    files = sorted(p for p in root.glob("Actor_*/*")
                   if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{root}: no manifest.csv and no Actor_XX/*.wav|flac files; "
                                "expected the RAVDESS layout (see prepare_ravdess docstring)")
    rows, problems, song = [], [], 0
    for p in files:
        m = _NAME.match(p.stem)
        if m is None:
            problems.append(f"{p.name}: expected MM-VV-EE-II-SS-RR-AA (seven two-digit fields)")
            continue
        modality, channel, emo, inten, _stmt, _rep, actor = m.groups()
        folder_actor = p.parent.name.removeprefix("Actor_")
        if modality != "03":
            problems.append(f"{p.name}: modality {modality}; expected 03 (audio-only)")
        elif channel not in ("01", "02"):
            problems.append(f"{p.name}: vocal channel {channel}; expected 01 (speech) or 02 (song)")
        elif emo not in EMOTION_CODES:
            problems.append(f"{p.name}: emotion code {emo}; expected 01-08")
        elif inten not in INTENSITY_CODES:
            problems.append(f"{p.name}: intensity code {inten}; expected 01 or 02")
        elif actor != folder_actor.zfill(2) or int(actor) == 0:
            problems.append(f"{p.name}: actor {actor} in a folder named {p.parent.name}")
        elif channel == "02":
            song += 1  # RAVDESS song: a different task (and no disgust/surprised)
        else:
            rows.append(dict(path=p.resolve(), stem=p.stem, actor=actor,
                             sex="male" if int(actor) % 2 else "female",
                             emotion=EMOTION_CODES[emo], intensity=INTENSITY_CODES[inten]))
    raise_problems(root, problems)
    if song:
        log.info("ravdess: excluded %d song clips (vocal channel 02); only speech is used", song)
    return rows


def _check_unique_ids(records: list[Utterance]) -> None:
    dup = [i for i, c in Counter(r.id for r in records).items() if c > 1]
    if dup:
        raise ValueError(f"ravdess: {len(dup)} clips appear twice (e.g. as .wav and .flac): "
                         f"{sorted(dup)[:5]}; expected one file per clip")


def _fmt_counts(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
