"""int8 quantization of a bundle.

The student (a CNN, 1-2 ms a window) is quantized statically (QDQ, activation ranges calibrated
on real windows of the val speakers): int8 convolutions are what make it faster. The teacher (a
transformer) gets dynamic quantization of its MatMul weights: per-channel int8 weights quarter
its size, and activations are quantized per call, so no calibration can misjudge a range.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from service.audio import load_audio, windows_for
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


def quantize_bundle(src: Path, out: Path, calibration: list[Utterance], max_windows: int = 200) -> Bundle:
    """Write an int8 copy of the bundle at `src` into `out` (same labels, window, temperature)."""
    b = load_bundle(src)
    out.mkdir(parents=True, exist_ok=True)
    pre = out / "preprocessed.onnx"
    quant_pre_process(str(b.model_path), str(pre), skip_symbolic_shape=True)
    if b.role == "teacher":
        quantize_dynamic(str(pre), str(out / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=front_end_nodes(pre))
        method = {"method": "onnxruntime dynamic quantization, per-channel int8 MatMul weights"}
    else:
        windows = np.concatenate([windows_for(load_audio(r.path), b.window_s, b.hop_s, b.trim_silence, b.pad)[0]
                                  for r in calibration])[:max_windows]
        quantize_static(str(pre), str(out / MODEL_FILE), WindowReader(b.input["name"], windows),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, nodes_to_exclude=front_end_nodes(pre))
        method = {"method": "onnxruntime static QDQ, per-channel int8 weights", "calibration_windows": int(len(windows))}
    pre.unlink()
    meta = {**json.loads((src / "bundle.json").read_text()), "precision": "int8", "name": b.name}
    meta["extra"].pop("parity_rel_logit_error", None)   # measured on the float32 graph, not this one
    meta["extra"] = {**meta.get("extra", {}), "quantization": method}
    return write_bundle(out, meta, (src / CARD_FILE).read_text())
