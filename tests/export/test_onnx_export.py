"""ONNX export: one self-contained file, dynamic axes, parity with torch on real audio."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from export.onnx_export import check_parity, export_onnx
from service.audio import Windowing, load_audio
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
    windows, _ = Windowing(3.0, 1.0, trim_silence=True).windows(load_audio(ravdess_clip))
    assert check_parity(model, path, windows) <= 1e-4


@pytest.mark.parametrize("batch,seconds", [(1, 3.0), (5, 3.0), (2, 1.3), (1, 7.5)])
def test_parity_on_other_shapes(exported, batch, seconds):
    model, path = exported
    windows = np.stack([voice(seconds, seed=i) for i in range(batch)])
    assert check_parity(model, path, windows) <= 1e-4


def test_the_bundle_carries_the_windowing_it_was_exported_with(tmp_path):
    """export_bundle writes the model's Windowing into bundle.json (at its top-level keys, as
    bundles always had them); load_bundle reads it back and the service cuts audio with it."""
    from export.bundles import export_bundle
    from service.bundle import load_bundle
    from service.inference import OnnxModel
    from tests.support.bundles import TINY_CONFIG
    from tests.support.corpora import make_manifest_corpus
    from training.corpora import prepare_manifest

    records = prepare_manifest(make_manifest_corpus(tmp_path / "corpus", speakers=2, seconds=2.2), corpus="c")
    windowing = Windowing(1.5, 0.5, trim_silence=False, pad="repeat")   # none of them the defaults
    torch.manual_seed(0)
    bundle, _ = export_bundle(LiteCNN(TINY_CONFIG).eval(), tmp_path / "bundle", role="student", name="w",
                              windowing=windowing, parts={"train": [], "val": records[:6], "test": records[6:]},
                              training={}, license={"weights": "test only", "data": "generated"}, description="tiny",
                              eval_dir=tmp_path / "eval")
    meta = json.loads((bundle.path / "bundle.json").read_text())
    assert {k: meta[k] for k in windowing.to_json()} == windowing.to_json()
    served = OnnxModel(load_bundle(bundle.path))
    assert served.bundle.windowing == windowing
    x = load_audio(records[0].path)
    np.testing.assert_array_equal(served.windows(x)[0], windowing.windows(x)[0])
