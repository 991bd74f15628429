"""int8 quantization of a bundle.

The student (a CNN, 1-2 ms a window) is quantized statically (QDQ, activation ranges calibrated
on real windows of the val speakers): int8 convolutions are what make it faster. The teacher (a
transformer) gets dynamic quantization of its MatMul weights: per-channel int8 weights quarter
its size, and activations are quantized per call, so no calibration can misjudge a range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from service.audio import load_audio
from service.bundle import CARD_FILE, MODEL_FILE, Bundle, load_bundle, write_bundle
from training.records import Utterance


class WindowReader(CalibrationDataReader):
    """Feeds real windows, one at a time, to the calibrator (activation ranges)."""

    def __init__(self, input_name: str, windows: np.ndarray):
        self._items = iter([{input_name: w[None]} for w in windows])

    def get_next(self):
        return next(self._items, None)


def front_end_nodes(model_path: Path) -> list[str]:
    """Names of the nodes up to and including the first Log: the filterbank energies span many
    orders of magnitude, which 8 bits cannot hold (quantizing them cost the student ~0.25 UA)."""
    names = []
    for node in onnx.load(str(model_path)).graph.node:   # stored in topological order
        names.append(node.name)
        if node.op_type == "Log":
            return names
    return []


# Static int8 recipes for the student, measured against the float model in
# experiments/quant_agreement.py. `float`: node-name prefixes kept in float beyond the front end.
VARIANTS: dict[str, dict] = {
    "minmax": {},
    "moving-average": {"extra": {"CalibMovingAverage": True}},
    "s8": {"activation": QuantType.QInt8},
    "block0-float": {"float": ["/norm/", "/blocks/blocks.0/"]},
    "head-float": {"float": ["/bottleneck/", "/head/"]},
    "ends-float": {"float": ["/norm/", "/blocks/blocks.0/", "/bottleneck/", "/head/"]},
    "dynamic": {"dynamic": True},   # int8 weights, activation ranges measured per call (ConvInteger)
}


def quantize_student_graph(src: Path, out: Path, input_name: str, windows: np.ndarray, recipe: dict) -> None:
    """Static QDQ int8 copy of the student graph at `src`, activation ranges calibrated on
    `windows` (real audio, as served), per-channel int8 weights; the front end stays float."""
    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    keep = front_end_nodes(pre) + [n.name for n in onnx.load(str(pre)).graph.node
                                   if any(n.name.startswith(p) for p in recipe.get("float", []))]
    try:
        if recipe.get("dynamic"):
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=keep)
        else:
            quantize_static(str(pre), str(out), WindowReader(input_name, windows), quant_format=QuantFormat.QDQ,
                            activation_type=recipe.get("activation", QuantType.QUInt8), weight_type=QuantType.QInt8,
                            per_channel=True, nodes_to_exclude=keep,
                            calibrate_method=CalibrationMethod.MinMax, extra_options=recipe.get("extra", {}))
    finally:
        pre.unlink()


# The teacher's MatMuls multiply uint8 activations by int8 weights. On x86 CPUs without VNNI,
# onnxruntime does it with an instruction whose 16-bit pair sums saturate: with 8-bit weights the
# teacher shipped before gave its float model's label on only 80-94 % of held-out clips there
# (VNNI's instruction sums into 32 bits). 7-bit weights cannot saturate and cost no time
# (docs/experiments.md, "The int8 teacher on CPUs without VNNI").
TEACHER_INT8 = {"weight_type": QuantType.QInt8, "reduce_range": True}

AGREEMENT_BAR = 0.97   # share of held-out clips on which an int8 student must give its float model's label


def probability_agreement(p: np.ndarray, q: np.ndarray) -> dict:
    """How far probabilities `q` are from `p`, row by row (one clip each): the share of rows with
    the same label, and the total-variation distance of the rows."""
    tv = 0.5 * np.abs(p - q).sum(axis=1)
    return {"label_agreement": float((p.argmax(axis=1) == q.argmax(axis=1)).mean()),
            "mean_prob_distance": float(tv.mean()), "max_prob_distance": float(tv.max())}


def agreement(float_dir: Path, int8_dir: Path, records: list[Utterance]) -> dict:
    """How far an int8 bundle is from its float one on `records` (held-out audio), as served."""
    from training.evaluate import bundle_probs

    a = probability_agreement(bundle_probs(float_dir, records), bundle_probs(int8_dir, records))
    return {"clips": len(records), **a, "meets_bar": a["label_agreement"] >= AGREEMENT_BAR}


def quantize_bundle(src: Path, out: Path, calibration: list[Utterance], max_windows: int = 200,
                    teacher_options: dict | None = None) -> Bundle:
    """Write an int8 copy of the bundle at `src` into `out` (same labels, window, temperature).
    `teacher_options`: quantize_dynamic's options for a teacher over TEACHER_INT8's (the variants
    are measured in experiments.teacher_int8)."""
    b = load_bundle(src)
    out.mkdir(parents=True, exist_ok=True)
    if b.role == "teacher":
        pre = out / "preprocessed.onnx"
        quant_pre_process(str(b.model_path), str(pre), skip_symbolic_shape=True)
        options = {**TEACHER_INT8, **(teacher_options or {})}
        quantize_dynamic(str(pre), str(out / MODEL_FILE), per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=front_end_nodes(pre), **options)
        pre.unlink()
        method = {"method": "onnxruntime dynamic quantization, per-channel int8 MatMul weights"
                            + (" in 7 bits (reduce_range)" if options["reduce_range"] else "")}
    else:
        windows = np.concatenate([b.windowing.windows(load_audio(r.path))[0]
                                  for r in calibration])[:max_windows]
        quantize_student_graph(b.model_path, out / MODEL_FILE, b.input["name"], windows, VARIANTS["minmax"])
        method = {"method": "onnxruntime static QDQ, per-channel int8 weights", "calibration_windows": int(len(windows))}
    meta = {**b.to_json(), "precision": "int8"}
    meta["extra"].pop("parity_rel_logit_error", None)   # measured on the float32 graph, not this one
    meta["extra"] = {**meta.get("extra", {}), "quantization": method}
    return write_bundle(out, meta, (src / CARD_FILE).read_text())
