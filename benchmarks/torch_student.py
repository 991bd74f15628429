"""The shipped ONNX student as a PyTorch LiteCNN, for the naive baseline of benchmarks/load.py.

The bundle records the LiteCNN config it was trained with; the weights come from model.onnx
itself. Export folded each BatchNorm that follows a 1x1 convolution into that convolution, so
here those convolutions take the folded weights and their BatchNorm becomes the identity plus
the folded bias: the same network, checked against onnxruntime at load (export's parity check).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from service.bundle import load_bundle
from training.student import LiteCNN, LiteCNNConfig


def load_torch_student(bundle: Path) -> LiteCNN:
    model = LiteCNN(LiteCNNConfig(**load_bundle(bundle).training["config"]["model"])).eval()
    graph = onnx.load(str(bundle / "model.onnx")).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    state = model.state_dict()
    for name in state:
        if name in weights:
            state[name] = weights[name]
    # Folded 1x1 convolutions, in graph order: every block's pointwise conv, then the bottleneck.
    folded = [(n.input[1], n.input[2]) for n in graph.node
              if n.op_type == "Conv" and len(n.input) == 3 and n.input[1] not in state]
    pairs = [(f"blocks.{i}.pointwise", f"blocks.{i}.bn") for i in range(len(model.blocks))]
    pairs.append(("bottleneck.0", "bottleneck.1"))
    if len(folded) != len(pairs):
        raise ValueError(f"{bundle}: {len(folded)} folded convolutions, expected {len(pairs)}")
    for (w, b), (conv, bn) in zip(folded, pairs):
        eps = dict(model.named_modules())[bn].eps
        state[f"{conv}.weight"], state[f"{bn}.bias"] = weights[w], weights[b]
        state[f"{bn}.weight"] = torch.ones_like(weights[b])
        state[f"{bn}.running_mean"] = torch.zeros_like(weights[b])
        state[f"{bn}.running_var"] = torch.full_like(weights[b], 1 - eps)   # (x - 0) / sqrt(1 - eps + eps) = x
    model.load_state_dict(state)
    return model
