"""What `model=auto` trades: share of clips sent to the teacher and UA, per fallback threshold.

    python -m experiments.fallback_curve --fold runs/ravdess/fold0 \
        [--student models/student --teacher models/teacher] [--thresholds 0 0.5 1 1.6 2 3]

On the fold's test speakers (its split.json; records.csv one folder up), both bundles answer
every clip exactly as the service does (calibrated probabilities); a clip goes to the teacher
when the student's logit margin is below the threshold, as SER_FALLBACK_THRESHOLD decides.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from service.bundle import load_bundle
from service.fallback import asks_teacher, auto_probs
from service.labels import LABELS
from training.evaluate import bundle_probs
from training.metrics import classification_report
from training.records import read_records
from training.splits import apply_split, read_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fold", type=Path, required=True, help="a pipeline fold folder (split.json)")
    ap.add_argument("--student", type=Path, default=Path("models/student"))
    ap.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0, 0.5, 1, 1.6, 2, 3])
    args = ap.parse_args()

    test = apply_split(read_records(args.fold.parent / "records.csv"), read_split(args.fold / "split.json"))["test"]
    y = np.array([LABELS.index(r.label) for r in test])
    student, teacher = bundle_probs(args.student, test), bundle_probs(args.teacher, test)
    temperature = load_bundle(args.student).temperature
    print("| threshold | share sent to the teacher | UA |\n|---|---|---|")
    for t in args.thresholds:
        to_teacher = asks_teacher(student, t, temperature)
        pred = auto_probs(student, teacher, t, temperature).argmax(1)
        print(f"| {t:g} | {to_teacher.mean():.0%} | {classification_report(y, pred, LABELS)['ua']:.3f} |")


if __name__ == "__main__":
    main()
