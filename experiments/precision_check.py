"""Float32 vs int8 student on the test speakers recorded in the bundle, through the service's front end.

    python -m experiments.precision_check --float runs/NAME/fold0/bundles/student \
        --int8 runs/NAME/fold0/bundles/student-int8

The split in the float bundle's bundle.json names its test speakers; both bundles score their
RAVDESS clips exactly as served (training.evaluate.bundle_probs). Prints UA of each and how
often they agree on the label. The shipped models (`models/`) were trained on every speaker and
have no test speakers: compare the bundles of a k-fold run instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from service.bundle import load_bundle
from training.corpora.ravdess import prepare_ravdess
from training.evaluate import bundle_probs, report_from_probs

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float", dest="fp", type=Path, default=Path("models/student"))
    ap.add_argument("--int8", type=Path, default=Path("models/student-int8"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"), help="the RAVDESS copy (manifest.csv)")
    args = ap.parse_args()
    test = set(load_bundle(args.fp).training["split"]["speakers"]["test"])
    if not test:
        raise SystemExit(f"{args.fp} has no test speakers (trained on every speaker); "
                         "pass the bundles of a k-fold run, e.g. runs/NAME/fold0/bundles/student")
    records = [r for r in prepare_ravdess(args.data) if r.speaker in test]
    probs = {name: bundle_probs(b, records, threads=1) for name, b in (("float32", args.fp), ("int8", args.int8))}
    for name, p in probs.items():
        print(f"{name}: UA {report_from_probs(p, records)['ua']:.4f} on {len(records)} clips of speakers {sorted(test)}")
    agree = (probs["float32"].argmax(1) == probs["int8"].argmax(1)).mean()
    print(f"same label on {agree:.1%} of the clips")


if __name__ == "__main__":
    main()
