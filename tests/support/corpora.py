"""Factories for tiny generated corpora (real audio files: 0.2 s of noise, or a generated voice)
and records.

Every factory writes under a folder the test gives (tmp_path) and returns what it wrote,
so a test states the corpus it needs in one line.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import soundfile as sf

from service.labels import LABELS
from devtools.audio import voice
from training.records import Utterance

SAMPLE_RATE = 16000
RAVDESS_EMOTIONS = ("01", "02", "03", "04", "05", "06", "07", "08")
RAVDESS_NAMES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                 "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}


def write_noise(path: str | Path, seconds: float = 0.2, sr: int = SAMPLE_RATE,
                seed: int = 0) -> Path:
    """Write `seconds` of quiet white noise; the format follows the suffix (.wav, .flac)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


def write_empty_wav(path: str | Path) -> Path:
    """A WAV header with no frames (like a broken file in the public CREMA-D release)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE, subtype="PCM_16")
    return path


def ravdess_name(actor: int, emotion: str, intensity: str = "01", statement: str = "01",
                 repetition: str = "01", *, modality: str = "03", channel: str = "01") -> str:
    """An original RAVDESS file stem, e.g. 03-01-05-02-01-01-07."""
    return f"{modality}-{channel}-{emotion}-{intensity}-{statement}-{repetition}-{actor:02d}"


def make_ravdess(root: str | Path, actors=(1, 2), emotions=RAVDESS_EMOTIONS, *,
                 statements=("01",), repetitions=("01",), ext: str = ".wav",
                 manifest: bool = False) -> list[Path]:
    """RAVDESS speech files ``root/Actor_XX/03-01-EE-II-SS-RR-AA<ext>``.

    Neutral has only normal intensity, as in the corpus; with all statements and
    repetitions an actor gets the full 60 clips. `manifest=True` also writes a
    ``manifest.csv`` in the layout of ../shared/data/ravdess.
    """
    root = Path(root)
    files = []
    for actor, emo, stmt, rep in itertools.product(actors, emotions, statements, repetitions):
        for inten in ("01",) if emo == "01" else ("01", "02"):
            stem = ravdess_name(actor, emo, inten, stmt, rep)
            files.append(write_noise(root / f"Actor_{actor:02d}" / f"{stem}{ext}",
                                     seed=len(files)))
    if manifest:
        with open(root / "manifest.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "actor", "sex", "emotion", "intensity", "statement",
                        "repetition", "sample_rate", "duration_s"])
            for p in files:
                _, _, emo, inten, stmt, rep, actor = p.stem.split("-")
                w.writerow([p.relative_to(root).as_posix(), actor,
                            "male" if int(actor) % 2 else "female", RAVDESS_NAMES[emo],
                            "normal" if inten == "01" else "strong", stmt, rep,
                            SAMPLE_RATE, 0.2])
    return files


def make_cremad(root: str | Path, stems) -> list[Path]:
    """CREMA-D audio ``root/AudioWAV/<stem>.wav`` for each stem (e.g. 1001_DFA_ANG_XX)."""
    return [write_noise(Path(root) / "AudioWAV" / f"{stem}.wav", seed=i)
            for i, stem in enumerate(stems)]


def cremad_stems(actors=(1001, 1002), sentences=("DFA", "IEO"),
                 codes=("ANG", "DIS", "FEA", "HAP", "SAD", "NEU"), level: str = "XX") -> list[str]:
    return [f"{a}_{s}_{c}_{level}" for a, s, c in itertools.product(actors, sentences, codes)]


def make_cremad_meta(meta_dir: str | Path, sexes: dict[int, str],
                     votes: dict[str, str] | None = None) -> Path:
    """VideoDemographics.csv (ActorID -> "Male"/"Female") and, given `votes`
    (stem -> VoiceVote such as "A" or "A:H"), summaryTable.csv, as in CREMA-D."""
    meta_dir = Path(meta_dir)
    meta_dir.mkdir(parents=True, exist_ok=True)
    with open(meta_dir / "VideoDemographics.csv", "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for actor, sex in sexes.items():
            w.writerow([actor, 30, sex, "Caucasian", "Not Hispanic"])
    if votes is not None:
        with open(meta_dir / "summaryTable.csv", "w", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)
            w.writerow(["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel",
                        "MultiModalVote", "MultiModalLevel"])
            for i, (stem, vote) in enumerate(votes.items(), start=1):
                w.writerow([i, stem, vote, "60", vote, "60", vote, "60"])
    return meta_dir


def write_manifest(path: str | Path, rows: list[dict], columns=None) -> Path:
    """A generic corpus CSV; `columns` defaults to the keys of the first row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns or list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def make_records(n_male: int = 0, n_female: int = 0, n_unknown: int = 0, *,
                 per_label: int = 1, corpus: str = "toy") -> list[Utterance]:
    """Records (no audio) for speakers m00.., f00.., u00..; `per_label` clips per label each."""
    speakers = ([(f"{corpus}:m{i:02d}", "male") for i in range(n_male)]
                + [(f"{corpus}:f{i:02d}", "female") for i in range(n_female)]
                + [(f"{corpus}:u{i:02d}", "") for i in range(n_unknown)])
    return [Utterance(id=f"{spk}/{label}{j}", path=f"/nonexistent/{spk}/{label}{j}.wav",
                      speaker=spk, label=label, corpus=corpus, sex=sex)
            for spk, sex in speakers for label in LABELS for j in range(per_label)]


def make_manifest_corpus(root: Path, speakers: int = 8, seconds: float = 1.2) -> Path:
    """`speakers` x 6 emotions, one generated voice clip each, as a generic CSV manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(speakers):
        for i, label in enumerate(LABELS):
            path = root / f"spk{s}_{label}.wav"
            sf.write(path, voice(seconds, seed=s * 10 + i), 16_000)
            rows.append({"path": path.name, "label": label, "speaker": f"spk{s}", "sex": "male" if s % 2 else "female"})
    return write_manifest(root / "manifest.csv", rows)
