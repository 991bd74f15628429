"""Try a teacher recipe on one fold: RAVDESS test speakers and another corpus side by side.

    python -m experiments.teacher_recipe --fold runs/ravdess/fold0 --out runs/try-freeze4 \
        --set '{"freeze_layers": 4}' [--cross ../shared/data/tess-oaf/manifest.csv]

Trains a teacher on the fold's training speakers (its split.json; records.csv one folder up)
with the fold teacher's own config plus the `--set` overrides, then scores the best checkpoint
(torch, through the service's windowing) on the fold's test speakers and on the `--cross`
manifest. The fold's own teacher is the baseline: `--set '{}' --out <fold>/teacher` scores it
without training (a folder with COMPLETE is not retrained).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.corpora import prepare_corpus
from training.data import load_clips
from training.evaluate import report_from_probs
from training.runs import checkpoint_probs
from training.records import read_records
from training.splits import apply_split, read_split
from training.train_teacher import TeacherConfig, train_teacher

TESS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tess-oaf" / "manifest.csv"


def ua(checkpoint: Path, records: list) -> float:
    return report_from_probs(checkpoint_probs(checkpoint, records), records)["ua"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fold", type=Path, required=True, help="a pipeline fold folder (split.json, teacher/)")
    ap.add_argument("--out", type=Path, required=True, help="where the trial teacher goes")
    ap.add_argument("--set", default="{}", help="JSON TeacherConfig overrides")
    ap.add_argument("--cross", type=Path, default=TESS, help="manifest CSV of another corpus")
    args = ap.parse_args()
    parts = apply_split(read_records(args.fold.parent / "records.csv"), read_split(args.fold / "split.json"))
    base = json.loads((args.fold / "teacher" / "config.json").read_text())
    cfg = TeacherConfig.from_dict({**base, **json.loads(args.set)})
    t0 = time.time()
    if not (args.out / "COMPLETE").exists():
        data = {p: (load_clips(parts[p]), [r.label for r in parts[p]]) for p in ("train", "val")}
        train_teacher(cfg, data["train"], data["val"], args.out)
        (args.out / "COMPLETE").touch()
    result = {"set": json.loads(args.set), "train_s": round(time.time() - t0),
              "test_ua": ua(args.out / "best", parts["test"]),
              "cross_ua": ua(args.out / "best", prepare_corpus("manifest", args.cross, corpus="cross"))}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
