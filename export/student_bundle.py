"""Write the student bundle of a run: ONNX + parity check + test metrics + model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.onnx_export import bundle_meta, write_model_bundle
from service.audio import load_audio, windows_for
from service.bundle import Bundle, load_bundle, write_bundle
from training.records import read_records
from training.splits import apply_split, read_split
from training.student import count_parameters
from training.train_student import load_student

STUDENT_TOLERANCE = 1e-4   # max |delta logit| torch vs onnxruntime


def export_student(run: Path, out: Path, *, name: str = "litecnn-ravdess", version: str = "0.1.0") -> Bundle:
    from training.evaluate import bundle_probs, report_from_probs

    model, cfg = load_student(run / "student" / "student.pt")
    split = read_split(run / "split.json")
    parts = apply_split(read_records(run / "records.csv"), split)
    # Parity on real audio: the first test clips, windowed exactly as the service does.
    parity = np.concatenate([windows_for(load_audio(r.path), cfg.window_s, cfg.hop_s, cfg.trim_silence)[0]
                             for r in parts["test"][:4]])
    training = {"data": _corpus_of(parts), "split": json.loads((run / "split.json").read_text()),
                "config": json.loads((run / "student" / "config.json").read_text())}
    meta = bundle_meta(name=name, version=version, role="student", window_s=cfg.window_s, hop_s=cfg.hop_s,
                       trim_silence=cfg.trim_silence, parameters=count_parameters(model),
                       training=training, license=RAVDESS_LICENSE)
    write_model_bundle(model, out, meta, "", parity, STUDENT_TOLERANCE)
    rep = report_from_probs(bundle_probs(out, parts["test"]), parts["test"])
    meta["metrics"] = {"test": {k: rep[k] for k in ("n", "accuracy", "ua", "macro_f1", "ece", "per_class_recall")}}
    meta["extra"] = load_bundle(out).extra
    return write_bundle(out, meta, student_card(meta, rep))


RAVDESS_LICENSE = {"weights": "CC BY-NC-SA 4.0 (trained on RAVDESS; non-commercial, share-alike)",
                   "data": "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0"}


def _corpus_of(parts: dict) -> str:
    corpora = sorted({r.corpus for recs in parts.values() for r in recs})
    return ", ".join(corpora)


def student_card(meta: dict, rep: dict) -> str:
    split = meta["training"]["split"]
    recall = " · ".join(f"{k} {v:.2f}" for k, v in rep["per_class_recall"].items())
    return f"""# {meta['name']} {meta['version']} — LiteCNN student

Raw-waveform 1D CNN (learnable mel-initialised Gabor filterbank, depthwise-separable
Conv1d blocks), {meta['parameters']:,} parameters. Input: float32 waveform `[batch, samples]`
at 16 kHz (normalisation inside the graph); output: logits over
{', '.join(meta['labels'])}. Windows of {meta['window_s']} s, hop {meta['hop_s']} s,
silence trim {'on' if meta['trim_silence'] else 'off'}; the utterance result is the mean of
window probabilities.

## Data and split
Trained on {meta['training']['data']} with a speaker-independent split (seed {split['seed']}):
test speakers {', '.join(split['test'])}; validation speakers {', '.join(split['val'])};
no speaker appears in two parts.

## Metrics on the test speakers (never seen in training)
| clips | accuracy | UA | macro-F1 | ECE |
|---|---|---|---|---|
| {rep['n']} | {rep['accuracy']:.3f} | {rep['ua']:.3f} | {rep['macro_f1']:.3f} | {rep['ece']:.3f} |

Per-class recall: {recall}.

## License
Weights: {meta['license']['weights']}. Data: {meta['license']['data']}.
RAVDESS: Livingstone SR, Russo FA (2018), PLoS ONE 13(5): e0196391.
"""
