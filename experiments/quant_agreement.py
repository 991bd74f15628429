"""Does an int8 student keep its float model's answers? Label agreement and probability distance
per set, for the served int8 bundle and for int8 variants built here from the float bundle.

    python -m experiments.quant_agreement --out /work/runs-distill/quant

Sets: TESS OAF (never trained on), and RAVDESS / nEMO clips of the bundle's *training*
speakers (the shipped models were trained on every speaker we have, so these are not held out;
the val speakers are the calibration clips and are left out of the agreement sets). Every clip
goes through the service's own front end (the bundle's Windowing) and the mean of calibrated window
probabilities, as served. Windows are cached per set under --out, so variants rerun in seconds.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.quantize import VARIANTS, probability_agreement, quantize_student_graph
from service.audio import SAMPLE_RATE, load_audio, trim_silence
from service.bundle import load_bundle
from service.labels import LABELS
from training.corpora import prepare_corpus
from training.degrade import degrade
from training.metrics import classification_report


def set_records(bundle_meta: dict, data: Path) -> dict[str, list]:
    val = set(bundle_meta["training"]["split"]["speakers"]["val"])
    recs = {"tess-oaf": prepare_corpus("manifest", data / "tess-oaf" / "manifest.csv", corpus="tess-oaf")}
    for name in ("ravdess", "nemo"):
        recs[name] = [r for r in prepare_corpus(name, data / name) if r.speaker not in val]
    for name in ("tess-oaf", "ravdess"):   # audio unlike the calibration clips: degraded, short
        for cond in SHIFTS:
            recs[f"{name} {cond}"] = recs[name][::2]
    recs["calibration"] = [r for name in ("ravdess", "nemo") for r in prepare_corpus(name, data / name)
                           if r.speaker in val]
    return recs


SHIFTS = ("telephone_8k", "noise_10db", "reverb", "1s")


def clip_audio(r, name: str) -> np.ndarray:
    """The clip as the set presents it: as recorded, degraded (training.degrade), or its middle 1 s."""
    x = load_audio(r.path)
    cond = name.split(" ")[1] if " " in name else None
    if cond == "1s":
        x = trim_silence(x)
        mid = max(0, len(x) // 2 - SAMPLE_RATE // 2)
        return x[mid:mid + SAMPLE_RATE]
    return degrade(x, cond, seed=zlib.crc32(r.id.encode())) if cond else x


def cached_windows(records, b, path: Path, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(W, S) float32 windows of every clip, as served, and the clip index of each window."""
    if path.is_file():
        z = np.load(path)
        return z["windows"].astype(np.float32), z["owner"]
    ws, owner = [], []
    for i, r in enumerate(records):
        w, _ = b.windowing.windows(clip_audio(r, name))
        ws.append(w)
        owner += [i] * len(w)
    windows, owner = np.concatenate(ws), np.asarray(owner)
    np.savez(path, windows=windows.astype(np.float16), owner=owner)   # float16: half the disk, < 1e-3 error
    return np.load(path)["windows"].astype(np.float32), owner


def clip_probs(model_path: Path, windows: np.ndarray, owner: np.ndarray, temperature: float) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: windows[i:i + 64]})[0] for i in range(0, len(windows), 64)])
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    out = np.zeros((owner.max() + 1, p.shape[1]))
    np.add.at(out, owner, p)
    return out / np.bincount(owner)[:, None]


def time_graphs(graphs: dict[str, Path], window: np.ndarray, rounds: int) -> dict[str, float]:
    """Median milliseconds of one forward pass per graph, one thread, graphs interleaved."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in graphs.items()}
    times = {k: [] for k in sess}
    for _ in range(rounds):
        for k, s in sess.items():
            t0 = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: window})
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: round(float(np.median(v)), 3) for k, v in times.items()}


def ua(probs: np.ndarray, records) -> float:
    keep = np.array([r.label is not None for r in records])
    y = np.array([LABELS.index(r.label) for r in records if r.label is not None])
    return classification_report(y, probs[keep].argmax(1), LABELS)["ua"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float", dest="fp", type=Path, default=Path("models/student"))
    ap.add_argument("--int8", type=Path, default=Path("models/student-int8"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--time", type=int, default=0, help="also time each graph: this many rounds of one 3 s window")
    ap.add_argument("--calibrate-degraded", action="store_true",
                    help="calibrate the variants also on telephone-band, noisy and reverberant copies of the "
                         "calibration clips")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    b = load_bundle(args.fp)
    recs = set_records(b.to_json(), args.data)
    win = {k: cached_windows(v, b, args.out / f"windows-{k.replace(' ', '-')}.npz", k) for k, v in recs.items()}
    calib = win.pop("calibration")[0]
    suffix = "-degraded-cal" if args.calibrate_degraded else ""
    if args.calibrate_degraded:
        calib = np.concatenate([calib, *(cached_windows(recs["calibration"], b, args.out / f"windows-calibration-{c}.npz",
                                                        f"calibration {c}")[0] for c in SHIFTS if c != "1s")])
    sets = [k for k in recs if k != "calibration"]
    ref = {k: clip_probs(b.model_path, *win[k], b.temperature) for k in sets}
    models = {"shipped int8": args.int8 / "model.onnx"}
    for v in args.variants:
        path = args.out / f"{v}{suffix}.onnx"
        if not path.is_file():
            t0 = time.time()
            quantize_student_graph(b.model_path, path, b.input["name"], calib, VARIANTS[v])
            print(f"built {v} in {time.time() - t0:.0f} s ({len(calib)} calibration windows)", flush=True)
        models[v + suffix] = path
    rows = {"float32": {k: {"ua": ua(ref[k], recs[k])} for k in sets}}
    for name, path in models.items():
        rows[name] = {}
        for k in sets:
            p = clip_probs(path, *win[k], b.temperature)
            a = probability_agreement(ref[k], p)
            rows[name][k] = {"agree": a["label_agreement"], "n": len(p), "mean_tv": a["mean_prob_distance"],
                             "max_tv": a["max_prob_distance"], "ua": ua(p, recs[k])}
        print(name, json.dumps(rows[name]), flush=True)
    if args.time:
        graphs = {"float32": b.model_path, **models}
        ms = time_graphs(graphs, win["ravdess"][0][:1], args.time)
        for name in graphs:
            rows[name]["ms_per_window"] = ms[name]
        print("median ms per 3 s window, one thread, interleaved:", json.dumps(ms))
    (args.out / "agreement.json").write_text(json.dumps(rows, indent=1))
    print("| variant | " + " | ".join(f"{k} agree | {k} UA" for k in sets) + " | mean TV |")
    for name, r in rows.items():
        cells = [f"{r[k].get('agree', 1):.3f} | {r[k]['ua']:.3f}" for k in sets]
        tv = np.mean([r[k].get("mean_tv", 0) for k in sets])
        print(f"| {name} | " + " | ".join(cells) + f" | {tv:.4f} |")


if __name__ == "__main__":
    main()
