"""The fallback threshold of a student–teacher recipe, chosen where its models never heard the
speakers: the k folds' test speakers of each corpus (pooled) and each corpus never trained on
(averaged over the folds' models), weighted equally. Leave-one-corpus-out splits are reported,
not chosen by: with two corpora they train on one.

The rule: the largest mean UA of `model=auto` with the teacher answering at most MAX_SHARE of the
clips (mean over the sets) and no set more than MAX_DROP below the student alone. Thresholds are
on the student's logit margin, which does not depend on its calibration (service.fallback), so
the one chosen on the folds' students holds for the final student of the same recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.bundle import load_bundle
from service.fallback import asks_teacher
from service.labels import LABELS
from training.metrics import classification_report
from training.records import Utterance
from training.robustness import robustness_sets
from training.splits import apply_split, read_split

MAX_SHARE, MAX_DROP = 0.40, 0.02
MARGINS = np.round(np.arange(0.0, 4.01, 0.1), 2)   # 0: the student alone

# A part: one model pair's answers on one set, {"labels": (N,) str, "student", "teacher": (N, C)
# calibrated probabilities in LABELS order, "temperature": the student's, one per row}.
Part = dict[str, np.ndarray]


def served(part: Part, t: float) -> np.ndarray:
    """Where the service's rule sends a part's clips to the teacher at threshold t."""
    return asks_teacher(part["student"], t, part["temperature"])


def ua(probs: np.ndarray, labels: np.ndarray, classes=LABELS) -> float:
    """UA over `classes` (argmax over those columns, clips labelled with one of them)."""
    idx = [LABELS.index(c) for c in classes]
    keep = np.isin(labels, classes)
    y = np.array([classes.index(lab) for lab in labels[keep]])
    return classification_report(y, probs[keep][:, idx].argmax(1), list(classes))["ua"]


def curve(sets: dict[str, list[Part]], thresholds, to_teacher: Callable[[Part, float], np.ndarray] = served,
          classes=LABELS) -> list[dict]:
    """Per threshold: each set's `auto` UA and teacher share (mean over its parts), their means."""
    rows = []
    for t in thresholds:
        row = {"threshold": float(t)}
        for name, parts in sets.items():
            asked = [to_teacher(p, t) for p in parts]
            row[name] = float(np.mean([ua(np.where(a[:, None], p["teacher"], p["student"]), p["labels"], classes)
                                       for a, p in zip(asked, parts)]))
            row[f"{name} share"] = float(np.mean([a.mean() for a in asked]))
        row["mean"] = float(np.mean([row[n] for n in sets]))
        row["share"] = float(np.mean([row[f"{n} share"] for n in sets]))
        rows.append(row)
    return rows


def chosen(rows: list[dict], names: list[str]) -> dict:
    """The rule (module docstring) over a curve whose rows[0] is the student alone."""
    base = rows[0]
    ok = [r for r in rows if r["share"] <= MAX_SHARE and all(r[n] >= base[n] - MAX_DROP for n in names)]
    return max(ok, key=lambda r: r["mean"])


def choose(sets: dict[str, list[Part]]) -> dict:
    """{"threshold", "chosen": its curve row, "curve"} on the served signal."""
    rows = curve(sets, MARGINS)
    best = chosen(rows, list(sets))
    return {"threshold": best["threshold"], "chosen": best, "curve": rows}


def fold_sets(folds: list[Path], records: list[Utterance], cross: dict[str, list[Utterance]],
              degraded_clips: int) -> dict[str, list[Part]]:
    """The k folds' distilled students and teachers on what they never heard, from the answers
    the pipeline saved (eval/<bundle>/sets): each corpus's test speakers pooled over the folds
    (one part), each cross corpus one part per fold. Folds without a student are skipped."""
    sets: dict[str, list[Part]] = {}
    for fold in folds:
        if not (fold / "bundles" / "student").is_dir():
            continue
        t = load_bundle(fold / "bundles" / "student").temperature
        test = apply_split(records, read_split(fold / "split.json"))["test"]
        for name, (recs, condition) in robustness_sets(test, cross, degraded_clips).items():
            if condition is None:
                probs = {m: np.load(fold / "eval" / m / "sets" / f"{name}.npy") for m in ("student", "teacher")}
                sets.setdefault(name, []).append(
                    {"labels": np.array([r.label for r in recs]), **probs, "temperature": np.full(len(recs), t)})
    return {n: [{k: np.concatenate([p[k] for p in parts]) for k in parts[0]}] if n.startswith("test-") else parts
            for n, parts in sets.items()}
