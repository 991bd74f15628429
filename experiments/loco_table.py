"""Student, teacher and `model=auto` per held-out set, with their spread: the leave-one-corpus-out
splits beside the speaker folds.

    python -m experiments.loco_table --run /work/runs-distill/mc --name student_RF [--threshold 1.6]

Reads RUN/fold*/<name>/oof.npz and RUN/loco-*/<name>/oof.npz (`experiments.fold_students --loco`).
Rows: a corpus left out (the model trained on the other corpus, tested on every speaker of this
one), TESS OAF scored by that model, and for comparison the speaker folds (every speaker once,
pooled; TESS OAF: mean of the fold models). UA 6 classes / 4 classes (angry, happy, neutral, sad).
Spread: the standard deviation of UA over the set's speakers; TESS OAF has one speaker, so over
the fold models, or for a single model over 1,000 bootstrap resamples of its clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.fallback_table import FOUR, auto, oof_parts, ua
from service.fallback import DEFAULT_THRESHOLD
from service.labels import LABELS
from training.records import read_records

MODELS = ("student", "teacher", "auto")


def answers(part: dict, threshold: float) -> dict[str, np.ndarray]:
    out, to_teacher = auto(part, threshold)
    return {"student": part["student"], "teacher": part["teacher"], "auto": out, "share": to_teacher}


def spread(part: dict, probs: np.ndarray, speakers: np.ndarray, classes) -> float:
    """sd of UA over speakers; with one speaker, over bootstrap resamples of the clips."""
    if len(set(speakers)) > 1:
        return float(np.std([ua(probs[speakers == s], part["labels"][speakers == s], classes)
                             for s in sorted(set(speakers))]))
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(probs), len(probs)) for _ in range(1000)]
    return float(np.std([ua(probs[d], part["labels"][d], classes) for d in draws]))


def row(label: str, parts: list[dict], speaker: dict, threshold: float) -> str:
    """One table row; several parts (TESS OAF under the fold models) are averaged, their spread
    is over the parts."""
    got = [answers(p, threshold) for p in parts]
    speakers = np.array([speaker.get(i, "one") for i in parts[0]["ids"]])
    cells = []
    for classes in (LABELS, FOUR):
        for m in MODELS:
            scores = [ua(a[m], p["labels"], classes) for a, p in zip(got, parts)]
            sd = np.std(scores) if len(parts) > 1 else spread(parts[0], got[0][m], speakers, classes)
            cells.append(f"{np.mean(scores):.3f} ± {sd:.3f}")
    share = np.mean([a["share"].mean() for a in got])
    return f"| {label} | " + " | ".join(cells) + f" | {share:.0%} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--name", default="student_kd")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="model=auto's (default: served)")
    args = ap.parse_args()
    speaker = {r.id: r.speaker for r in read_records(args.run / "records.csv")}
    print(f"model=auto at threshold {args.threshold:g}; UA ± spread\n\n| set | " +
          " | ".join(f"{m}, {n}" for n in ("6 classes", "4 classes") for m in MODELS) +
          " | teacher share |\n" + "|---" * 8 + "|")
    for oof in sorted(args.run.glob(f"loco-*/{args.name}/oof.npz")):
        held = oof.parts[-3][len("loco-"):]
        sets = oof_parts(oof)
        print(row(f"{held}, left out", [sets[held]], speaker, args.threshold))
        print(row(f"TESS OAF, trained without {held}", [sets["tess-oaf"]], speaker, args.threshold))
    folds = [oof_parts(f) for f in sorted(args.run.glob(f"fold*/{args.name}/oof.npz"))]
    for corpus in sorted({c for f in folds for c in f} - {"tess-oaf"}):
        pooled = {k: np.concatenate([f[corpus][k] for f in folds]) for k in folds[0][corpus]}
        print(row(f"{corpus}, speaker folds", [pooled], speaker, args.threshold))
    if folds:
        print(row(f"TESS OAF, the {len(folds)} fold models", [f["tess-oaf"] for f in folds], speaker, args.threshold))


if __name__ == "__main__":
    main()
