"""How a window shorter than the student's 3 s is filled: zeros (as it was trained) or the
clip repeated, on audio the shipped pair did not train on, whole clips and 1 s crops.

    python -m experiments.pad_mode [--student models/student] [--teacher models/teacher] [--out DIR]

The held-out sets are the shipped models' validation speakers (RAVDESS 15 and 20, nEMO SM0:
never trained on, used for early stopping and calibration) and TESS OAF (never trained on); a
1 s crop is the middle second of the clip after its silence is trimmed. Every answer goes
through the service's own code (`OnnxModel.predict` behind the speech gate); a clip answered
"no speech" counts as an error. Prints UA per set and, for each pad mode, the `model=auto` curve
and the threshold the fallback rule picks from it (experiments.fallback_table: the largest mean
UA with the teacher answering at most 40 % of clips and no set more than 0.02 below the student);
with --out, saves the probabilities.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from pipeline.fallback import MARGINS, chosen
from service.audio import SAMPLE_RATE, load_audio, trim_silence
from service.bundle import load_bundle
from service.fallback import asks_teacher, auto_probs
from service.inference import OnnxModel
from service.labels import LABELS
from service.speech import SpeechGate
from training.corpora import prepare_corpus
from training.evaluate import report_from_probs


def held_out(student_dir: Path, data: Path) -> dict[str, list]:
    val = set(load_bundle(student_dir).training["split"]["speakers"]["val"])
    sets = {name: [r for r in prepare_corpus(name, data / name) if r.speaker in val] for name in ("ravdess", "nemo")}
    sets["tess-oaf"] = prepare_corpus("manifest", data / "tess-oaf" / "manifest.csv", corpus="tess-oaf")
    return sets


def middle_second(x: np.ndarray) -> np.ndarray:
    x = trim_silence(x)
    mid = max(0, len(x) // 2 - SAMPLE_RATE // 2)
    return x[mid:mid + SAMPLE_RATE]


def probs(model: OnnxModel, clips: list[np.ndarray], gate: SpeechGate) -> np.ndarray:
    """(N, C) probabilities as served; NaN rows for "no speech"."""
    out = np.full((len(clips), len(LABELS)), np.nan)
    for i, x in enumerate(clips):
        p = model.predict(x, gate=gate)
        if not p.no_speech:
            out[i] = [p.probabilities[k] for k in LABELS]
    return out


def ua(p: np.ndarray, recs: list) -> float:
    """UA as every report gives it; a NaN row ("no speech") is an error."""
    return report_from_probs(p, recs)["ua"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", type=Path, default=Path("models/student"))
    ap.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    gate = SpeechGate(intra_threads=1)
    student = load_bundle(args.student)
    models = {f"student, pad {pad}": OnnxModel(dataclasses.replace(
        student, windowing=dataclasses.replace(student.windowing, pad=pad)), intra_threads=1)
              for pad in ("zero", "repeat")}
    models["teacher"] = OnnxModel(load_bundle(args.teacher), intra_threads=1)
    got, records = {}, {}
    for name, recs in held_out(args.student, args.data).items():
        whole = [load_audio(r.path) for r in recs]
        for length, clips in (("whole", whole), ("1 s", [middle_second(x) for x in whole])):
            records[name, length] = recs
            for m, model in models.items():
                got[m, name, length] = probs(model, clips, gate)
    sets = sorted({k[1:] for k in got})
    print("| model | " + " | ".join(f"{s} ({n})" for s, n in sets) + " | mean whole | mean 1 s |")
    print("|---" * (len(sets) + 3) + "|")
    for m in models:
        cells = {s: ua(got[(m, *s)], records[s]) for s in sets}
        means = [np.mean([v for s, v in cells.items() if s[1] == n]) for n in ("whole", "1 s")]
        print(f"| {m} | " + " | ".join(f"{v:.3f}" for v in cells.values()) + f" | {means[0]:.3f} | {means[1]:.3f} |")
    whole = [s for s in sets if s[1] == "whole"]
    for m in (k for k in models if k.startswith("student")):
        print(f"\n`model=auto` with the {m} on whole clips: UA (teacher share)")
        print("| threshold | " + " | ".join(s[0] for s in whole) + " | mean UA | teacher share | worst set vs student |")
        print("|---" * (len(whole) + 4) + "|")
        names = [s[0] for s in whole]
        rows = []
        for th in MARGINS:
            row = {"threshold": float(th)}
            for s in whole:
                row[s[0]] = ua(auto_probs(got[(m, *s)], got[("teacher", *s)], th, student.temperature), records[s])
                row[f"{s[0]} share"] = asks_teacher(got[(m, *s)], th, student.temperature).mean()   # NaN (no speech): never
            row["mean"] = float(np.mean([row[n] for n in names]))
            row["share"] = float(np.mean([row[f"{n} share"] for n in names]))
            rows.append(row)
            worst = min(row[n] - rows[0][n] for n in names)
            print(f"| {th:g} | " + " | ".join(f"{row[n]:.3f} ({row[n + ' share']:.0%})" for n in names) +
                  f" | {row['mean']:.3f} | {row['share']:.0%} | {worst:+.3f} |")
        best = chosen(rows, names)
        print(f"chosen by the rule: {best['threshold']:g} (mean UA {best['mean']:.3f}, teacher share {best['share']:.0%})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(args.out / "pad_mode.npz", **{" | ".join(k): v for k, v in got.items()})


if __name__ == "__main__":
    main()
