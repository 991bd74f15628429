"""Turn trained checkpoints into served bundles: ONNX + parity + calibration + metrics + card.

`export_bundle` is the one path from a torch model to a bundle folder; the pipeline and
`ser export` both use it, so every shipped bundle is checked and described the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from export.cards import model_card
from export.onnx_export import bundle_meta, write_model_bundle
from service.audio import Windowing, load_audio
from service.bundle import DEFAULT_VERSION, Bundle, load_bundle, write_bundle
from service.inference import OnnxModel
from training.calibrate import fit_temperature, utterance_probs, window_logits
from training.config import CPU_THREADS
from training.corpora import read_corpus_info
from training.evaluate import report_from_probs, write_report
from training.records import Utterance
from training.student import count_parameters
from training.whisper_convert import backbone_source

# torch vs onnxruntime, max |delta logit| / max(1, max |logit|) (export.onnx_export.check_parity).
# Measured: ~1e-7 for LiteCNN; up to 8e-4 for a tiny random Whisper teacher here and 1.1e-3 on
# another CPU (float32 kernels differ by build); an export bug gives ~1. The bounds leave 10x.
TOLERANCE = {"student": 1e-4, "teacher": 1e-2}
SUMMARY_KEYS = ("n", "accuracy", "ua", "macro_f1", "ece", "per_class_recall")


def export_bundle(model: torch.nn.Module, out: Path, *, role: str, name: str, windowing: Windowing,
                  parts: dict[str, list[Utterance]], training: dict, license: dict, description: str,
                  eval_dir: Path, version: str = DEFAULT_VERSION, threads: int = CPU_THREADS) -> tuple[Bundle, dict | None]:
    """Export `model`, check parity on real audio, fit the temperature on the val speakers,
    evaluate on the test speakers (report into eval_dir). Returns (bundle, report); the report
    is None for a split without test speakers (a model trained on every speaker). `license`:
    the training corpus's terms for the data and the weights (`read_corpus_info`)."""
    parity = [windowing.windows(load_audio(r.path))[0] for r in (parts["test"] or parts["val"])[:3]]
    meta = bundle_meta(name=name, version=version, role=role, windowing=windowing, parameters=count_parameters(model),
                       training=training, license=license)
    exported = write_model_bundle(model, out, meta, "", parity, TOLERANCE[role])
    onnx_model = OnnxModel(exported, intra_threads=threads)
    calibration = fit_temperature(window_logits(onnx_model, parts["val"]), parts["val"])
    meta.update(temperature=calibration["temperature"], extra={**exported.extra, "calibration": calibration})
    return _finish(out, meta, onnx_model, parts, description, eval_dir)


def _finish(out: Path, meta: dict, model: OnnxModel, parts: dict, description: str,
            eval_dir: Path) -> tuple[Bundle, dict | None]:
    """Test metrics (when there are test speakers), model card and bundle.json."""
    meta["extra"]["description"] = description    # so the card can be written again later
    rep = None
    if parts["test"]:
        rep = report_from_probs(utterance_probs(window_logits(model, parts["test"]), meta["temperature"]),
                                parts["test"])
        meta["metrics"] = {"test": {k: rep[k] for k in SUMMARY_KEYS}}
        write_report(rep, eval_dir, f"{meta['name']} ({meta['precision']}) on the test speakers")
    return write_bundle(out, meta, model_card(meta, rep, description)), rep


def export_quantized(src: Path, out: Path, parts: dict, eval_dir: Path, description: str,
                     held_out: list[Utterance] = ()) -> tuple[Bundle, dict | None]:
    """int8 copy of the bundle at `src` (static QDQ for the student, dynamic MatMul weights for
    the teacher), with its UA change against float32 on the test speakers and, on `held_out`
    audio (not the calibration clips), how often it gives the float model's label."""
    from export.quantize import agreement, quantize_bundle

    quantized = quantize_bundle(src, out, parts["val"])
    meta = quantized.to_json()
    meta["metrics"] = {}
    if held_out:
        meta["extra"]["quantization"]["agreement"] = agreement(src, out, list(held_out))
    bundle, rep = _finish(out, meta, OnnxModel(quantized), parts, description, eval_dir)
    if rep is not None:
        float_ua = load_bundle(src).metrics["test"]["ua"]
        meta["extra"]["quantization"]["ua_change_vs_float32"] = rep["ua"] - float_ua
        bundle = write_bundle(out, meta, model_card(meta, rep, description))
    return bundle, rep


def split_info(fold: Path, parts: dict) -> dict:
    return {"data": ", ".join(sorted({r.corpus for recs in parts.values() for r in recs})),
            "split": json.loads((fold / "split.json").read_text())}


def export_fold_bundles(fold: Path, parts: dict, teacher: torch.nn.Module, windowing: Windowing, teacher_dir: Path,
                        students: dict[str, Path], held_out: list[Utterance] = ()) -> dict:
    """All bundles of one pipeline split, RUN/<split> (or of the final models, RUN/final), and
    their test reports (None where the split has no test speakers). `teacher`: the fold's
    teacher on raw waveform, served with `windowing`, trained in `teacher_dir`. The corpora's
    names and licences come from the run (RUN/corpus.json). `held_out`: audio the int8 student's
    agreement with its float model is checked on (the test speakers and the cross corpora)."""
    from training.train_student import load_student

    info = split_info(fold, parts)
    corpus = read_corpus_info(fold.parent)
    reports = {}
    tcfg, backbone, description = teacher_training(teacher_dir)
    reports["teacher"] = _cached(fold, "teacher", lambda out: export_bundle(
        teacher, out, role="teacher", name=f"{Path(backbone).name}-ser", windowing=windowing, parts=parts,
        training={**info, "config": tcfg}, license=corpus["license"], description=description,
        eval_dir=fold / "eval" / "teacher"))
    reports["teacher_int8"] = _cached(fold, "teacher-int8", lambda out: export_quantized(
        fold / "bundles" / "teacher", out, parts, fold / "eval" / "teacher-int8",
        description + INT8_NOTE["teacher"]))
    for key, ckpt in students.items():
        model, scfg = load_student(ckpt)
        out_name = "student" if key == "student_kd" else key
        reports[out_name] = _cached(fold, out_name, lambda out: export_bundle(
            model, out, role="student", name=student_name(corpus), windowing=scfg.windowing, parts=parts,
            training={**info, "config": json.loads((ckpt.parent / "config.json").read_text())},
            license=corpus["license"], description=STUDENT_DESCRIPTION, eval_dir=fold / "eval" / out_name))
    if "student_kd" in students:
        reports["student_int8"] = _cached(fold, "student-int8", lambda out: export_quantized(
            fold / "bundles" / "student", out, parts, fold / "eval" / "student-int8",
            STUDENT_DESCRIPTION + INT8_NOTE["student"], held_out))
    return {"fold": fold.name, "test_speakers": list(info["split"]["speakers"]["test"]), **reports}


def teacher_training(teacher_dir: Path) -> tuple[dict, str, str]:
    """(training config, backbone, card description) of a pipeline teacher folder: a frozen
    encoder's head or a fine-tuned encoder (training.teacher_folder)."""
    from training.frozen_teacher import head_meta
    from training.teacher_folder import read_kind

    if read_kind(teacher_dir) == "frozen":
        head = head_meta(teacher_dir)
        cfg = {k: v for k, v in head.items() if k != "history"}
        return cfg, head["backbone"], frozen_description(head["backbone"], head["layer_weights"])
    cfg = json.loads((teacher_dir / "config.json").read_text())
    return cfg, cfg["backbone"], teacher_description(cfg["backbone"])


def student_name(corpus: dict) -> str:
    return f"litecnn-{corpus['name']}"


def _cached(fold: Path, name: str, make) -> dict | None:
    """Reuse a finished bundle (and its eval report) so a resumed pipeline skips the export."""
    out, metrics = fold / "bundles" / name, fold / "eval" / name / "metrics.json"
    if (out / "bundle.json").exists() and (metrics.exists() or not json.loads(
            (fold / "split.json").read_text())["speakers"]["test"]):
        return json.loads(metrics.read_text()) if metrics.exists() else None
    return make(out)[1]


def frozen_description(backbone: str, layer_weights: list[float]) -> str:
    weights = ", ".join(f"{w:.2f}" for w in layer_weights)
    return (f"{backbone_source(backbone)}, frozen: each window is scaled to peak 1, every hidden state (embeddings "
            "and each layer) is pooled over time into its mean and standard deviation, standardised, mixed "
            f"by learned softmax layer weights ({weights}, embeddings first) and classified by a two-layer "
            "MLP. The whole computation, log-mel included, runs inside the ONNX graph; short clips are "
            "not padded.")


def teacher_description(backbone: str) -> str:
    source = backbone_source(backbone)
    return (f"{source}, fine-tuned whole for emotion classification (a projector, mean over time "
            "and a linear layer on the last layer's frames). The front end (Whisper: the log-mel; "
            "wav2vec2-type: waveform normalisation) runs inside the ONNX graph; audio is not padded to 30 s.")


STUDENT_DESCRIPTION = (
    "LiteCNN: raw-waveform 1D CNN. A learnable complex Gabor filterbank (strided Conv1d, "
    "initialised on the mel scale) gives log energies; depthwise-separable Conv1d blocks "
    "(depthwise + pointwise + BatchNorm + ReLU + max-pool), a 1x1 bottleneck, mean+max pooling "
    "over time and a small MLP give 6 logits. The waveform is normalised per window inside the graph.")
INT8_NOTE = {"student": " int8 (static QDQ) copy of the float32 student.",
             "teacher": " int8 copy of the float32 teacher: the weights of its MatMuls quantized per "
                        "channel in 7 bits (dynamic), activations in float."}
