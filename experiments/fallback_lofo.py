"""Does the fallback rule's choice hold on folds it was not chosen on? Leave one fold out: the
threshold (and a learned signal's weights) is chosen on three folds' held-out predictions and
applied to the fourth; the four results are pooled as experiments.fallback_table pools them
(RAVDESS and nEMO test speakers pooled, TESS OAF the mean of the fold models).

    python -m experiments.fallback_lofo --run /work/runs-distill/mc --name student_RF60

Two signals: the served logit margin, and a learned score of the teacher's gain (teacher right
minus student right) from the student's own outputs: least squares on its margin, its predicted
class, the margin per predicted class and its entropy, each corpus weighted equally.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.fallback_table import oof_parts
from pipeline.fallback import MARGINS, chosen, curve, served, ua
from service.fallback import logit_margin
from service.labels import LABELS

TESS = "tess-oaf"


def features(p: dict) -> np.ndarray:
    s, margin = p["student"], logit_margin(p["student"], p["temperature"])
    top = np.eye(len(LABELS))[s.argmax(1)]
    entropy = -(s * np.log(np.clip(s, 1e-12, None))).sum(1)
    return np.column_stack([margin, top, top * margin[:, None], entropy, np.ones(len(s))])


def fit_gain(parts: dict[str, list[dict]]) -> np.ndarray:
    """Weights w: features(p) @ w estimates the teacher's gain on a clip."""
    xs, ys, ws = [], [], []
    for corpus_parts in parts.values():
        n = sum(len(p["labels"]) for p in corpus_parts)
        for p in corpus_parts:
            y = np.array([LABELS.index(label) for label in p["labels"]])
            xs.append(features(p))
            ys.append((p["teacher"].argmax(1) == y).astype(float) - (p["student"].argmax(1) == y))
            ws.append(np.full(len(y), 1.0 / n))
    x, y, w = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
    return np.linalg.solve(x.T @ (x * w[:, None]) + 1e-3 * np.eye(x.shape[1]), x.T @ (w * y))


def pooled(folds: list[dict[str, dict]]) -> dict[str, list[dict]]:
    sets: dict[str, list[dict]] = {}
    for fold in folds:
        for corpus, part in fold.items():
            sets.setdefault(corpus, []).append(part)
    return {c: ps if c == TESS else [{k: np.concatenate([p[k] for p in ps]) for k in ps[0]}] for c, ps in sets.items()}


def held_out_fold(folds: list[dict[str, dict]], j: int, signal: str) -> tuple[dict[str, np.ndarray], float]:
    """Where fold j's clips go to the teacher, with the signal chosen on the other folds."""
    train = pooled([f for i, f in enumerate(folds) if i != j])
    if signal == "logit margin":
        ask, grid = served, MARGINS
    else:
        w = fit_gain(train)
        ask = lambda p, t: features(p) @ w > -t   # noqa: E731  (-t: a larger threshold asks more)
        grid = -np.quantile(np.concatenate([features(p) @ w for ps in train.values() for p in ps]),
                            np.linspace(1, 0, 101))
    t = chosen(curve(train, grid, ask), list(train))["threshold"]
    return {c: ask(p, t) for c, p in folds[j].items()}, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--name", default="student_RF60")
    args = ap.parse_args()
    folds = [oof_parts(f) for f in sorted(args.run.glob(f"fold*/{args.name}/oof.npz"))]
    names = list(folds[0])
    print("| signal | " + " | ".join(f"{n} (share)" for n in names) + " | mean UA | share | thresholds |\n" +
          "|---" * (len(names) + 4) + "|")
    for signal in ("logit margin", "learned gain"):
        asked, ts = zip(*(held_out_fold(folds, j, signal) for j in range(len(folds))))
        cells = {}
        for c in names:
            parts = [{**f[c], "asked": a[c]} for f, a in zip(folds, asked)]
            sets = pooled([{c: p} for p in parts])[c]
            cells[c] = (np.mean([ua(np.where(p["asked"][:, None], p["teacher"], p["student"]), p["labels"])
                                 for p in sets]), np.mean([p["asked"].mean() for p in sets]))
        print(f"| {signal} | " + " | ".join(f"{u:.3f} ({s:.0%})" for u, s in cells.values()) +
              f" | {np.mean([u for u, _ in cells.values()]):.3f} | {np.mean([s for _, s in cells.values()]):.0%} | "
              + " / ".join(f"{t:.2f}" for t in ts) + " |")
    base = pooled(folds)
    print("student alone " + ", ".join(f"{c} {np.mean([ua(p['student'], p['labels']) for p in base[c]]):.3f}" for c in names)
          + "; teacher " + ", ".join(f"{c} {np.mean([ua(p['teacher'], p['labels']) for p in base[c]]):.3f}" for c in names))


if __name__ == "__main__":
    main()
