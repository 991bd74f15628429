"""torch -> ONNX: export a waveform classifier, check parity, write a model bundle."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from service.audio import SAMPLE_RATE, Windowing
from service.bundle import DEFAULT_VERSION, MODEL_FILE, Bundle, write_bundle
from service.labels import LABELS

INPUT, OUTPUT = "waveform", "logits"
OPSET = 18


def export_onnx(model: torch.nn.Module, path: str | Path, window_s: float) -> Path:
    """Export `model` ((B, S) waveform -> (B, C) logits) with dynamic batch and length axes,
    as one self-contained file (weights inside, no external .data)."""
    model = model.eval()
    example = torch.randn(2, round(window_s * SAMPLE_RATE))
    buf = io.BytesIO()
    # The TorchScript exporter (dynamo=False) exports LiteCNN and all four teacher families with
    # dynamic batch and length axes and parity checked below; it writes one file in memory.
    with torch.no_grad():
        torch.onnx.export(model, (example,), buf, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch", 1: "samples"}, OUTPUT: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def check_parity(model: torch.nn.Module, onnx_path: str | Path, windows: np.ndarray | list[np.ndarray]) -> float:
    """Max |logit_torch - logit_onnx| / max(1, max |logit_torch|) over (W, S) float32 windows,
    or a list of such batches (one per clip: the windows of unpadded clips differ in length).

    Relative to the logits' scale because float32 kernels (fused attention, LayerNorm, GELU)
    differ between torch and onnxruntime builds by a fraction of the values they compute; an
    export bug (a lost layer, another normalisation, a fixed axis) moves logits by their scale."""
    windows = [windows] if isinstance(windows, np.ndarray) else windows
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    deltas = []
    with torch.no_grad():
        for w in windows:
            ref = model.eval()(torch.from_numpy(w)).numpy()
            scale = max(1.0, float(np.abs(ref).max()))
            deltas.append(float(np.abs(ref - sess.run(None, {INPUT: w})[0]).max()) / scale)
    return max(deltas)


def bundle_meta(*, name: str, role: str, windowing: Windowing, parameters: int,
                version: str = DEFAULT_VERSION, temperature: float = 1.0,
                training: dict | None = None, metrics: dict | None = None,
                license: dict | None = None, **extra: Any) -> dict:
    """bundle.json content (docs/design.md, "Model bundle"); sha256 is filled in by write_bundle."""
    return {
        "name": name, "version": version, "role": role, "labels": list(LABELS),
        "sample_rate": SAMPLE_RATE, **windowing.to_json(),
        "input": {"name": INPUT, "shape": ["batch", "samples"], "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", len(LABELS)], "dtype": "float32"},
        "temperature": temperature, "parameters": parameters, "precision": "float32",
        "training": training or {}, "metrics": metrics or {}, "license": license or {},
        "extra": {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **extra},
    }


def write_model_bundle(model: torch.nn.Module, out_dir: str | Path, meta: dict, card: str,
                       parity_windows: np.ndarray | list[np.ndarray], tolerance: float) -> Bundle:
    """Export, check parity against torch (raises when the relative error is over `tolerance`),
    write the bundle."""
    out = Path(out_dir)
    onnx_path = export_onnx(model, out / MODEL_FILE, meta["window_s"])
    delta = check_parity(model, onnx_path, parity_windows)
    if delta > tolerance:
        raise RuntimeError(f"ONNX parity check failed: max |delta logit| / logit scale = {delta:.2e} "
                           f"> {tolerance:.0e}")
    meta = {**meta, "extra": {**meta.get("extra", {}), "parity_rel_logit_error": delta}}
    return write_bundle(out, meta, card)
