"""Scores beyond the clean test speakers: other corpora, degraded audio, and `model=auto`.

Every score goes through the served bundles (onnxruntime, the service's front end), so it is
what the service gives. Probabilities are cached per bundle and set, so the auto policy is scored
from the two bundles' answers without running them again. Layout under a fold's eval/::

    <bundle>/sets/<set>.npy     (N, C) calibrated probabilities on one set
    <bundle>/sets/<set>.json    classification report (UA, recall, confusion)

Sets: ``cross-<name>`` (every clip of a corpus never trained on), ``test-<corpus>`` (the split's
test speakers of that corpus) and ``degraded-<condition>-<corpus>`` (some of them under each of
`training.degrade.CONDITIONS`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.audio import load_audio
from service.bundle import load_bundle
from service.fallback import asks_teacher, auto_probs, threshold_for
from service.inference import OnnxModel
from service.labels import LABELS
from service.settings import Settings
from training.config import CPU_THREADS
from training.degrade import CONDITIONS, degrade
from training.evaluate import report_from_probs
from training.records import Utterance

REPORT_KEYS = ("n", "accuracy", "ua", "macro_f1", "per_class_recall", "labels", "confusion")


def set_probs(bundles: dict[str, Path], eval_root: Path, name: str, records: list[Utterance],
              condition: str | None = None) -> dict[str, np.ndarray]:
    """{bundle: (N, C) probabilities} on `records` (degraded by `condition`), cached per bundle.
    Each clip is decoded and degraded once for all the bundles that still need it."""
    paths = {b: eval_root / b / "sets" / f"{name}.npy" for b in bundles}
    todo = [b for b in bundles if not paths[b].exists()]
    if todo:
        models = {b: OnnxModel(load_bundle(bundles[b]), intra_threads=CPU_THREADS) for b in todo}
        probs = {b: [] for b in todo}
        for i, r in enumerate(tqdm(records, desc=name, unit="clip", leave=False)):
            x = load_audio(r.path)
            x = x if condition is None else degrade(x, condition, seed=i)
            for b, m in models.items():
                p = m.predict(x).probabilities
                probs[b].append([p[label] for label in LABELS])   # the project's order, whatever the bundle's
        for b in todo:
            paths[b].parent.mkdir(parents=True, exist_ok=True)
            np.save(paths[b], np.asarray(probs[b]))
    return {b: np.load(paths[b]) for b in bundles}


def evaluate_sets(bundles: dict[str, Path], eval_root: Path, sets: dict[str, tuple[list, str | None]]) -> dict:
    """{set: {bundle name: report, "auto": report}} for every bundle and set; "auto" when both
    a "student" and a "teacher" bundle are given."""
    out = {}
    if {"student", "teacher"} <= set(bundles):   # the rule as the service applies it to this student
        student = load_bundle(bundles["student"])
        th, t = threshold_for(student, Settings().fallback_threshold), student.temperature
    for set_name, (records, condition) in sets.items():
        probs = set_probs(bundles, eval_root, set_name, records, condition)
        out[set_name] = {b: _report(p, records) for b, p in probs.items()}
        if {"student", "teacher"} <= set(probs):
            out[set_name]["auto"] = {**_report(auto_probs(probs["student"], probs["teacher"], th, t), records),
                                     "teacher_share": float(asks_teacher(probs["student"], th, t).mean())}
        for b, rep in out[set_name].items():
            (eval_root / b / "sets").mkdir(parents=True, exist_ok=True)
            (eval_root / b / "sets" / f"{set_name}.json").write_text(json.dumps(rep, indent=2))
    return out


def robustness_sets(test: list[Utterance], cross: dict[str, list[Utterance]], degraded_clips: int = 200) -> dict:
    """The sets a split is scored on: each cross corpus, and per corpus the test speakers (if
    any) clean and, on `degraded_clips` of them spread evenly, per degradation."""
    sets = {f"cross-{name}": (recs, None) for name, recs in cross.items()}
    for corpus in sorted({r.corpus for r in test}):
        mine = [r for r in test if r.corpus == corpus]
        some = mine[::max(1, len(mine) // degraded_clips)][:degraded_clips]
        sets[f"test-{corpus}"] = (mine, None)
        sets.update({f"degraded-{c}-{corpus}": (some, c) for c in CONDITIONS})
    return sets


def _report(probs: np.ndarray, records: list[Utterance]) -> dict:
    rep = report_from_probs(probs, records)
    return {k: rep[k] for k in REPORT_KEYS}

