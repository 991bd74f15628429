"""A float32 teacher bundle rebuilt from an int8 one, so that it can be quantized again.

    python -m experiments.recover_teacher --int8 models/teacher --like RUN_FLOAT_TEACHER --out DIR

The int8 teacher quantizes the MatMul weights of both the frozen encoder and the head. The
encoder's float weights are the pretrained ones, the same in every teacher of the recipe; the
head's are not kept anywhere else. `--like` is any float32 teacher bundle of the same recipe and
backbone (e.g. `experiments.teacher_int8`'s DIR/teacher): its graph and encoder weights are
kept, and the head's parameters (layer weights, standardisation, MLP) are replaced by the int8
bundle's, the MLP weights dequantized (int8 value minus zero point, times the channel's scale).
The bundle keeps the int8 bundle's temperature and training record. The result is the int8
teacher's model up to the rounding of the head's weights, which VNNI CPUs compute exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from export.cards import model_card
from service.bundle import MODEL_FILE, write_bundle


def head_parameters(int8: onnx.ModelProto, like: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The head's float parameters of `int8`, named as in `like`."""
    have = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    out = {}
    for t in like.graph.initializer:
        if t.name in have and have[t.name].dtype == np.float32:
            if not np.array_equal(have[t.name], numpy_helper.to_array(t)):
                out[t.name] = have[t.name]
        elif f"{t.name}_Transposed_quantized" in have:   # the head's MLP weights (the encoder's are pretrained)
            q, zp, scale = (have[f"{t.name}_Transposed_{k}"] for k in ("quantized", "zero_point", "scale"))
            out[t.name] = ((q.astype(np.float32) - zp.astype(np.float32)) * scale).T
        if t.name in out and out[t.name].shape != tuple(t.dims):
            raise ValueError(f"{t.name}: shape {out[t.name].shape} does not fit the graph of --like")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--int8", type=Path, required=True)
    ap.add_argument("--like", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    like = onnx.load(str(args.like / MODEL_FILE))
    params = head_parameters(onnx.load(str(args.int8 / MODEL_FILE)), like)
    print("head parameters taken from the int8 bundle:", ", ".join(sorted(params)))
    for t in like.graph.initializer:
        if t.name in params:
            t.CopyFrom(numpy_helper.from_array(params[t.name].astype(np.float32), t.name))
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(like, str(args.out / MODEL_FILE))
    meta = json.loads((args.int8 / "bundle.json").read_text())
    meta["precision"] = "float32"
    meta["extra"].pop("quantization", None)
    meta["extra"]["description"] = meta["extra"]["description"].split(" int8 copy")[0]
    write_bundle(args.out, meta, model_card(meta, None, meta["extra"]["description"]))


if __name__ == "__main__":
    main()
