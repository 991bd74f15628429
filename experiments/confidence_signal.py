"""Does the student's confidence rank its errors? AUROC of three signals for "the student is
right": the top probability, the margin between the top two, and minus the entropy.

    python -m experiments.confidence_signal --out /work/runs-distill/quant [--bundle models/student]

Reuses the windows experiments/quant_agreement.py cached under --out (run that first). Only TESS
OAF is held out for the shipped student; RAVDESS and nEMO here are its training speakers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.quant_agreement import cached_windows, clip_probs, set_records
from service.bundle import load_bundle
from service.labels import LABELS


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    ranks = np.empty(len(score))
    order = np.argsort(score, kind="mergesort")
    ranks[order] = np.arange(1, len(score) + 1)
    for v in np.unique(score):   # average ranks of ties
        m = score == v
        ranks[m] = ranks[m].mean()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def signals(p: np.ndarray) -> dict[str, np.ndarray]:
    top2 = np.sort(p, axis=1)[:, -2:]
    return {"max probability": top2[:, 1], "margin": top2[:, 1] - top2[:, 0],
            "-entropy": (p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=Path("models/student"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    b = load_bundle(args.bundle)
    recs = set_records(b.to_json(), args.data)
    print("| set | clips | student accuracy | " + " | ".join(f"AUROC {s}" for s in signals(np.eye(6))) + " |")
    print("|---" * 6 + "|")
    for name in ("tess-oaf", "ravdess", "nemo"):
        keep = [i for i, r in enumerate(recs[name]) if r.label is not None]
        p = clip_probs(b.model_path, *cached_windows(recs[name], b, args.out / f"windows-{name}.npz"), b.temperature)[keep]
        y = np.array([LABELS.index(recs[name][i].label) for i in keep])
        right = p.argmax(1) == y
        cells = [f"{auroc(s, right):.3f}" for s in signals(p).values()]
        print(f"| {name} | {len(y)} | {right.mean():.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
