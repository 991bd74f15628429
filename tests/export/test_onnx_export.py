"""ONNX export: one self-contained file, dynamic axes, parity with torch on real audio."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from export.onnx_export import check_parity, export_onnx
from service.audio import load_audio, windows_for
from devtools.audio import voice
from training.student import LiteCNN


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = LiteCNN().eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", window_s=3.0)
    return model, path


def test_single_file_with_dynamic_axes(exported):
    _, path = exported
    assert list(path.parent.iterdir()) == [path]
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "samples"]


def test_parity_on_real_audio(exported, ravdess_clip):
    model, path = exported
    windows, _ = windows_for(load_audio(ravdess_clip), 3.0, 1.0, trim=True)
    assert check_parity(model, path, windows) <= 1e-4


@pytest.mark.parametrize("batch,seconds", [(1, 3.0), (5, 3.0), (2, 1.3), (1, 7.5)])
def test_parity_on_other_shapes(exported, batch, seconds):
    model, path = exported
    windows = np.stack([voice(seconds, seed=i) for i in range(batch)])
    assert check_parity(model, path, windows) <= 1e-4
