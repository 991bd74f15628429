"""A run folder (`ser train --out runs/NAME`): the hand-off between the training, export and
evaluation commands, and what a checkpoint answers on a run's records.

    records.csv   every utterance of the corpus (typed records)
    corpus.json   the corpus's name and licence, which its bundles carry
    split.json    the speaker-independent split (seed, speakers, counts)
    student/      student.pt, config.json, history.json
    eval/<name>/  metrics.json, report.md, confusion.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.audio import load_audio

from training.corpora import prepare_corpus, write_corpus_info
from training.records import Utterance, read_records, write_records
from training.evaluate import predict_probs
from training.splits import Split, apply_split, read_split, split_by_speaker, write_split
from training.teacher_folder import load_teacher_folder
from training.train_student import load_student


def prepare_run(run: Path, corpus: str, data: str, *, val_speakers: int, test_speakers: int, seed: int,
                **corpus_kw) -> tuple[list[Utterance], Split]:
    """records.csv + split.json in the run folder (reused when present, so stages resume)."""
    run.mkdir(parents=True, exist_ok=True)
    if (run / "split.json").exists() and (run / "records.csv").exists():
        return read_records(run / "records.csv"), read_split(run / "split.json")
    records = prepare_corpus(corpus, data, **corpus_kw)
    split = split_by_speaker(records, val_speakers=val_speakers, test_speakers=test_speakers, seed=seed)
    write_records(records, run / "records.csv")
    write_split(split, run / "split.json")
    write_corpus_info(run, [(corpus, data)])
    return records, split


def run_parts(run: Path) -> dict[str, list[Utterance]]:
    """The records of each part (train / val / test) of a run folder made by `ser train`."""
    missing = [f for f in ("records.csv", "split.json") if not (run / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run}: no {' or '.join(missing)}; not a run folder (make one with "
                                f"`ser train --out {run}`)")
    return apply_split(read_records(run / "records.csv"), read_split(run / "split.json"))


def checkpoint_probs(path: Path, records: list[Utterance]) -> np.ndarray:
    """(N, C) probabilities of a torch checkpoint (a student .pt file or a trained teacher folder)
    through the same front end and windowing as the service."""
    if path.is_dir():
        model, windowing = load_teacher_folder(path)
    else:
        model, cfg = load_student(path)
        windowing = cfg.windowing
    return predict_probs(model, [load_audio(r.path) for r in records], windowing)
