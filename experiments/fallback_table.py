"""The fallback threshold curve on out-of-fold predictions: threshold -> UA per corpus, the share
of clips sent to the teacher and the mean latency; the AUROC of each confidence signal for "the
student is right"; the 6-class and 4-class (angry, happy, neutral, sad) views.

    python -m experiments.fallback_table --run /work/runs-distill/mc [--name student_kd] [--plot docs/fallback-curve.png]

Reads RUN/fold*/<name>/oof.npz (experiments.fold_students). Sets, weighted equally: RAVDESS and
nEMO test speakers pooled over the folds (every speaker once), TESS OAF averaged over the fold
models. The chosen threshold maximises the held-out mean UA with the teacher answering at most
40 % of clips (mean over sets) and no set more than 0.02 below the student alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from experiments.confidence_signal import auroc, signals
from pipeline.fallback import MARGINS, MAX_SHARE, chosen, curve, served, ua
from service.fallback import DEFAULT_THRESHOLD, logit_margin
from service.labels import LABELS

FOUR = ("angry", "happy", "neutral", "sad")
SERVED = "logit margin"
SIGNALS = (SERVED, "max probability", "margin", "-entropy")


def oof_parts(oof: Path) -> dict[str, dict]:
    """corpus -> that corpus's rows of an oof file: labels, student, teacher (student_1s where it
    was scored) and the student's calibration temperature per row (from calibration.json beside it)."""
    z = np.load(oof)
    t = json.loads((oof.parent / "calibration.json").read_text())["temperature"]
    return {str(c): {**{k: z[k][z["corpus"] == c] for k in z.files if k != "corpus"},
                     "temperature": np.full(int((z["corpus"] == c).sum()), t)} for c in np.unique(z["corpus"])}


def load_sets(run: Path, name: str) -> dict[str, list[dict]]:
    """set -> list of parts; TESS OAF: one part per fold model, the others pooled over the folds."""
    sets: dict[str, list[dict]] = {}
    for f in sorted(run.glob(f"fold*/{name}/oof.npz")):
        for corpus, part in oof_parts(f).items():
            sets.setdefault(corpus, []).append(part)
    pooled = {c: [{k: np.concatenate([p[k] for p in parts]) for k in parts[0]}] for c, parts in sets.items()
              if c != "tess-oaf"}
    return {**pooled, "tess-oaf": sets.get("tess-oaf", [])}


def auto(part: dict, t: float) -> tuple[np.ndarray, np.ndarray]:
    """What model=auto answers at threshold t, and where the teacher answered (the service's rule)."""
    to_teacher = served(part, t)
    return np.where(to_teacher[:, None], part["teacher"], part["student"]), to_teacher


def all_signals(part: dict) -> dict[str, np.ndarray]:
    return {SERVED: logit_margin(part["student"], part["temperature"]), **signals(part["student"])}


def mean_over(parts: list[dict], fn) -> float:
    return float(np.mean([fn(p) for p in parts]))


def signal_curve(sets: dict, signal: str, thresholds, ms: tuple[float, float], classes=LABELS) -> list[dict]:
    """The pipeline's curve on any signal, with the mean latency per clip of each row."""
    to_teacher = served if signal == SERVED else (lambda p, t: signals(p["student"])[signal] < t)
    return [{**r, "ms": ms[0] + r["share"] * ms[1]} for r in curve(sets, thresholds, to_teacher, classes)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--name", default="student_kd")
    ap.add_argument("--student-ms", type=float, default=1.47, help="per clip (docs/experiments.md: one window)")
    ap.add_argument("--teacher-ms", type=float, default=26.4)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--shipped", type=float, default=DEFAULT_THRESHOLD, help="the served threshold, for comparison")
    args = ap.parse_args()
    sets = load_sets(args.run, args.name)
    names = list(sets)
    print("| set | student | teacher | student, 4 classes | teacher, 4 classes | student, middle 1 s | " +
          " | ".join(f"AUROC {s}" for s in SIGNALS) + " |\n|---" * 1 + "|---" * (5 + len(SIGNALS)) + "|")
    for n, parts in sets.items():
        cells = [mean_over(parts, lambda p, m=m, c=c: ua(p[m], p["labels"], c))
                 for c in (LABELS, FOUR) for m in ("student", "teacher")]
        au = [mean_over(parts, lambda p, s=s: auroc(all_signals(p)[s], p["student"].argmax(1) ==
                                                    np.array([LABELS.index(x) for x in p["labels"]])))
              for s in SIGNALS]
        short = (f"{mean_over(parts, lambda p: ua(p['student_1s'], p['labels'])):.3f}"
                 if "student_1s" in parts[0] else "not scored")
        print(f"| {n} | {cells[0]:.3f} | {cells[1]:.3f} | {cells[2]:.3f} | {cells[3]:.3f} | {short} | " +
              " | ".join(f"{a:.3f}" for a in au) + " |")
    for signal, grid in ((SERVED, MARGINS),
                         ("max probability", np.round(np.arange(0.0, 0.62, 0.02), 2))):
        rows = signal_curve(sets, signal, grid, (args.student_ms, args.teacher_ms))
        base, best = rows[0], chosen(rows, names)
        print(f"\n{signal}: best threshold {best['threshold']:g} (mean UA {best['mean']:.3f}, teacher share "
              f"{best['share']:.0%}; student alone {base['mean']:.3f})")
        shown = [(best["threshold"], "chosen")] + ([(args.shipped, "shipped")] if signal == SERVED else [])
        for t, what in shown:
            six, four = (signal_curve(sets, signal, [t], (0, 0), c)[0] for c in (LABELS, FOUR))
            cells = [f"{n} {six[n]:.3f} / {four[n]:.3f}" for n in names]
            print(f"auto at the {what} threshold {t:g}, UA 6 / 4 classes: " + "; ".join(cells))
        print("| threshold | " + " | ".join(names) + " | mean UA | teacher share | mean ms |\n" + "|---" * (len(names) + 4) + "|")
        for r in rows:
            print(f"| {r['threshold']:g} | " + " | ".join(f"{r[n]:.3f} ({r[n + ' share']:.0%})" for n in names) +
                  f" | {r['mean']:.3f} | {r['share']:.0%} | {r['ms']:.1f} |")
        if args.plot and signal == SERVED:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            for n in [*names, "mean"]:
                ax.plot([r["share"] for r in rows], [r[n] for r in rows], marker=".", label=n)
            ax.axvline(MAX_SHARE, color="grey", linestyle=":")
            ax.set_xlabel("share of clips answered by the teacher")
            ax.set_ylabel("UA of model=auto")
            ax.legend()
            fig.tight_layout()
            fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
