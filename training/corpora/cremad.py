"""CREMA-D (Cao et al. 2014) -> Utterance records.

Raw layout::

    root/AudioWAV/1001_DFA_ANG_XX.wav      (.flac also accepted, e.g. after conversion)
    meta_dir/VideoDemographics.csv         ActorID,Age,Sex,Race,Ethnicity
    meta_dir/summaryTable.csv              ,FileName,VoiceVote,VoiceLevel,FaceVote,...

A file name is ``<actor>_<sentence>_<emotion>_<level>``: actor 1001-1091, a three-letter
sentence code (IEO, DFA, ...), the emotion code (ANG, DIS, FEA, HAP, SAD, NEU; see
``EMOTION_CODES``) and the level (LO, MD, HI, or XX = unspecified).

``meta_dir`` defaults to `root`; the metadata ships separately from the audio (here:
``../shared/data/crema-d-meta``), so callers usually pass it. Without
``VideoDemographics.csv`` in the default place, sex is left unknown (with a warning);
a `meta_dir` passed explicitly must hold it.

``label_source``:

- ``"intended"`` (default): the emotion the actor was asked to portray (file name).
- ``"perceived"``: the crowd's majority label from the audio alone (``VoiceVote``). A
  vote with a tie (``"A:H"``) or an unknown letter has no agreed label: the clip is
  excluded and the count, with examples, goes to the log.

Malformed names and unknown codes raise ValueError naming the file and what was expected.
Clips without audio (a WAV header and no frames; the public CREMA-D release holds such
a file) are excluded with a warning.

Records: id ``cremad:<file stem>``, speaker ``cremad:<actor>``, absolute path, sex,
intensity (``low`` | ``medium`` | ``high`` | ``""`` for XX).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import soundfile as sf

from training.corpora.manifest import raise_problems
from training.corpora.tables import read_table
from training.records import Utterance

log = logging.getLogger(__name__)

CORPUS = "cremad"
LICENSE: dict[str, str] = {
    "data": "CREMA-D (Cao, Cooper, Keutmann, Gur, Nenkova & Verma 2014, IEEE Trans. Affective Computing), "
            "Open Database License 1.0, contents under the Database Contents License 1.0",
    "weights": "trained on CREMA-D (ODbL 1.0): check the ODbL's terms for works produced from the database",
}
# File-name emotion codes -> project label (the codes never leave this adapter).
EMOTION_CODES: dict[str, str] = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "SAD": "sad", "NEU": "neutral",
}
AUDIO_SUFFIXES = (".wav", ".flac")
LABEL_SOURCES = ("intended", "perceived")
LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": ""}
# summaryTable.csv vote letters -> label (the first letter of the file-name code).
VOTE_LETTERS: dict[str, str] = {code[0]: label for code, label in EMOTION_CODES.items()}
DEMOGRAPHICS = "VideoDemographics.csv"
SUMMARY = "summaryTable.csv"

_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_SMALL = 1024  # bytes; only files this small are opened to look for empty audio


def cremad_license(root: str | Path | None = None) -> dict[str, str]:
    return dict(LICENSE)


def prepare_cremad(root: str | Path, *, meta_dir: str | Path | None = None,
                   label_source: str = "intended") -> list[Utterance]:
    """Read CREMA-D audio under ``root/AudioWAV`` into records (sorted by id)."""
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source {label_source!r}; expected one of {LABEL_SOURCES}")
    root = Path(root).resolve()
    audio_dir = root / "AudioWAV"
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir} is not a folder; expected CREMA-D audio in "
                                "root/AudioWAV/1001_DFA_ANG_XX.wav")
    files = sorted(p for p in audio_dir.iterdir()
                   if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{audio_dir}: no .wav or .flac files")
    meta = Path(meta_dir).resolve() if meta_dir is not None else root

    clips, problems = [], []
    for p in files:
        m = _NAME.match(p.stem)
        if m is None:
            problems.append(f"{p.name}: expected <actor 4 digits>_<sentence>_<emotion>_<level>, "
                            "e.g. 1001_DFA_ANG_XX.wav")
        elif m[3] not in EMOTION_CODES:
            problems.append(f"{p.name}: emotion code {m[3]!r}; expected one of "
                            f"{', '.join(EMOTION_CODES)}")
        elif m[4] not in LEVELS:
            problems.append(f"{p.name}: level {m[4]!r}; expected one of {', '.join(LEVELS)}")
        else:
            clips.append((p, m[1], EMOTION_CODES[m[3]], LEVELS[m[4]]))
    raise_problems(audio_dir, problems)

    sexes = _read_sexes(meta, required=meta_dir is not None)
    if sexes is not None:
        unknown = sorted({actor for _, actor, _, _ in clips} - sexes.keys())
        if unknown:
            raise ValueError(f"{meta / DEMOGRAPHICS}: no row for actors {unknown[:10]}; "
                             "expected every actor in AudioWAV to be listed")
    votes = _read_votes(meta) if label_source == "perceived" else None

    records, empty, no_vote = [], [], []
    missing_votes = []
    for p, actor, label, level in clips:
        if _is_empty(p):
            empty.append(p.name)
            continue
        if votes is not None:
            if p.stem not in votes:
                missing_votes.append(p.stem)
                continue
            vote = votes[p.stem]
            if vote not in VOTE_LETTERS:
                no_vote.append(f"{p.stem}={vote}")
                continue
            label = VOTE_LETTERS[vote]
        records.append(Utterance(id=f"{CORPUS}:{p.stem}", path=str(p), speaker=f"{CORPUS}:{actor}",
                                 label=label, corpus=CORPUS,
                                 sex=sexes.get(actor, "") if sexes else "", intensity=level))
    if missing_votes:
        raise ValueError(f"{meta / SUMMARY}: no VoiceVote for {len(missing_votes)} clips, e.g. "
                         f"{missing_votes[:5]}; expected a row per clip (FileName column)")
    if empty:
        log.warning("cremad: excluded %d clips with no readable audio frames: %s",
                    len(empty), empty[:5])
    if no_vote:
        log.info("cremad: excluded %d clips without an agreed perceived voice label "
                 "(ties or unknown letters), e.g. %s", len(no_vote), no_vote[:5])
    log.info("cremad: %d clips, %d actors, %s labels", len(records),
             len({r.speaker for r in records}), label_source)
    return records


def _read_sexes(meta: Path, *, required: bool) -> dict[str, str] | None:
    """ActorID -> "male" | "female" from VideoDemographics.csv (None when absent, optional)."""
    path = meta / DEMOGRAPHICS
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} not found; meta_dir must hold {DEMOGRAPHICS}")
        log.warning("cremad: %s not found; speaker sex unknown (pass meta_dir)", path)
        return None
    sexes, problems = {}, []
    for n, row in enumerate(read_table(path, ("ActorID", "Sex")), start=2):
        sex = row["Sex"].strip().lower()
        if sex not in ("male", "female"):
            problems.append(f"row {n}: Sex {row['Sex']!r}; expected Male or Female")
        sexes[row["ActorID"].strip()] = sex
    raise_problems(path, problems)
    return sexes


def _read_votes(meta: Path) -> dict[str, str]:
    """Clip stem -> VoiceVote from summaryTable.csv (e.g. "A", or "A:H" for a tie)."""
    path = meta / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; label_source='perceived' needs {SUMMARY} "
                                "in meta_dir")
    return {row["FileName"].strip(): row["VoiceVote"].strip()
            for row in read_table(path, ("FileName", "VoiceVote"))}


def _is_empty(path: Path) -> bool:
    """True for a file that holds no audio frames (or cannot be read at all)."""
    if path.stat().st_size > _SMALL:
        return False
    try:
        return sf.info(str(path)).frames == 0
    except RuntimeError:  # soundfile's LibsndfileError: not audio libsndfile can read
        return True
