"""The int8 teacher against its float32 model on this machine's CPU: how often each int8 copy
gives the float model's label on held-out audio, and its UA there.

    python -m experiments.teacher_int8 --run RUN --out DIR [--float DIR] [--ship models/teacher]

RUN is a pipeline run folder with a final teacher (RUN/final/teacher/, as `ser pipeline --final`
or `experiments.final_student` makes it). Its float32 bundle is exported into DIR/teacher as the
pipeline exports it (or --float names one), then quantized three ways (dynamic, per-channel MatMul weights, uint8
activations): 8-bit int8 weights (the teacher shipped before), 7-bit (`reduce_range`, what the
pipeline now exports) and uint8 weights. On x86
CPUs without VNNI, onnxruntime multiplies uint8 by int8 with an instruction whose 16-bit sums can
saturate; 7-bit weights or uint8 x uint8 avoid it. Held-out audio: the final split's validation
speakers (never trained on) and TESS OAF (never trained on). Prints the CPU's flags that decide
the kernel, then per set and copy: label agreement with float32, mean probability distance, UA.

With --ship DIR (e.g. models/teacher) the 7-bit copy is written there as the pipeline finishes a
final teacher (card, calibration, its agreement with float32 on TESS OAF), carrying the recipe's
expected scores from the --shipped bundle's card and its own TESS OAF score.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from onnxruntime.quantization import QuantType

from devtools.process import int8_cpu_flags
from experiments.fold_students import TESS
from export.bundles import INT8_NOTE, export_bundle, export_quantized, split_info, teacher_training
from export.cards import model_card
from export.quantize import probability_agreement, quantize_bundle
from service.bundle import write_bundle
from training.corpora import prepare_corpus, read_corpus_info
from training.evaluate import bundle_probs, report_from_probs
from training.records import read_records
from training.splits import apply_split, read_split
from training.teacher_folder import load_teacher_folder

VARIANTS = {"8-bit": {"reduce_range": False}, "reduce-range": None,   # None: export.quantize's TEACHER_INT8
            "u8u8": {"weight_type": QuantType.QUInt8, "reduce_range": False}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shipped", type=Path, default=Path("models/teacher"), help="also scored, beside the copies")
    ap.add_argument("--ship", type=Path, help="write the 7-bit copy as a finished bundle here")
    ap.add_argument("--float", type=Path, help="a float32 teacher bundle to quantize instead of the run's final "
                    "teacher (e.g. experiments.recover_teacher's)")
    args = ap.parse_args()
    print("CPU flags:", " ".join(int8_cpu_flags()) or "none of avx2/avx512f/vnni")
    fold = args.run / "final"
    parts = apply_split(read_records(args.run / "records.csv"), read_split(fold / "split.json"))
    src = args.float or args.out / "teacher"
    if not (src / "bundle.json").exists():
        teacher, windowing = load_teacher_folder(fold / "teacher")
        tcfg, backbone, description = teacher_training(fold / "teacher")
        export_bundle(teacher, src, role="teacher", name=f"{Path(backbone).name}-ser", windowing=windowing,
                      parts=parts, training={**split_info(fold, parts), "config": tcfg},
                      license=read_corpus_info(args.run)["license"], description=description,
                      eval_dir=args.out / "eval-teacher")
    description = json.loads((src / "bundle.json").read_text())["extra"]["description"]
    copies = {"float32": src, "shipped int8 bundle": args.shipped}
    for name, options in VARIANTS.items():
        copies[f"int8 {name}"] = args.out / f"teacher-int8-{name}"
        if not (copies[f"int8 {name}"] / "bundle.json").exists():
            quantize_bundle(src, copies[f"int8 {name}"], parts["val"], teacher_options=options)
    sets = {c: [r for r in parts["val"] if r.corpus == c] for c in sorted({r.corpus for r in parts["val"]})}
    sets["tess-oaf"] = prepare_corpus("manifest", TESS, corpus="tess-oaf")
    print("| set | copy | same label as float32 | mean prob. distance | UA |\n|---|---|---|---|---|")
    scores = {}
    for set_name, recs in sets.items():
        probs = {name: bundle_probs(d, recs) for name, d in copies.items()}
        for name, p in probs.items():
            a = probability_agreement(probs["float32"], p)
            ua = report_from_probs(p, recs)["ua"]
            scores[set_name, name] = ua
            print(f"| {set_name} | {name} | {a['label_agreement']:.3f} | {a['mean_prob_distance']:.3f} | {ua:.3f} |",
                  flush=True)
    if args.ship:
        ship(src, args.ship, json.loads((args.shipped / "bundle.json").read_text()), parts, sets["tess-oaf"],
             scores["tess-oaf", "int8 reduce-range"], description, args.out)


def ship(src: Path, out: Path, shipped: dict, parts: dict, tess: list, tess_ua: float, description: str,
         work: Path) -> None:
    """The 7-bit copy of `src` finished in `out` as a final teacher: the shipped bundle's expected
    scores (the recipe's, from its splits) with this model's own score on TESS OAF."""
    export_quantized(src, out, parts, work / "eval-ship", description + INT8_NOTE["teacher"], held_out=tess)
    meta = json.loads((out / "bundle.json").read_text())
    meta["metrics"] = {**shipped["metrics"], "cross_corpus_ua": {"tess-oaf": tess_ua}}
    meta["extra"]["comparison"] = re.sub(r"(tess-oaf \(never trained on\): UA )[0-9]+\.[0-9]+",
                                         rf"\g<1>{tess_ua:.3f}", shipped["extra"]["comparison"])
    write_bundle(out, meta, model_card(meta, None, meta["extra"]["description"]))


if __name__ == "__main__":
    main()
