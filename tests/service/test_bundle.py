"""load_bundle: the one way in; a bad bundle fails with a message that names the problem."""

from __future__ import annotations

import json
import shutil

import pytest

from service.bundle import BundleError, load_bundle


@pytest.fixture
def bundle_copy(student_bundle, tmp_path):
    return shutil.copytree(student_bundle.path, tmp_path / "b")


def test_round_trip(student_bundle):
    b = load_bundle(student_bundle.path)
    assert b.labels == ("angry", "disgust", "fear", "happy", "sad", "neutral")
    assert b.role == "student" and b.sample_rate == 16000 and len(b.sha256) == 64
    assert (b.path / "MODEL_CARD.md").is_file()
    assert not list(b.path.glob("*.data"))   # one self-contained model.onnx


def edit_meta(folder, **changes):
    meta = json.loads((folder / "bundle.json").read_text())
    meta.update(changes)
    (folder / "bundle.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change,message", [
    (dict(role="oracle"), "role"),
    (dict(sample_rate=8000), "sample_rate"),
    (dict(hop_s=5.0), "hop_s"),
    (dict(labels=["a", "a"]), "labels"),
    (dict(temperature=0), "temperature"),
    (dict(pad="mirror"), "pad"),
    (dict(fallback_threshold=-1.0), "fallback_threshold"),
])
def test_invalid_metadata(bundle_copy, change, message):
    edit_meta(bundle_copy, **change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_checksum_mismatch(bundle_copy):
    with open(bundle_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_missing_files(bundle_copy, tmp_path):
    with pytest.raises(BundleError, match=f"{tmp_path / 'nowhere'}: no such bundle folder"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="bundle.json: missing"):
        load_bundle(tmp_path / "empty")
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx: missing"):
        load_bundle(bundle_copy)


def test_not_json(bundle_copy):
    (bundle_copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_startup_fails_fast_on_a_corrupt_bundle(bundle_copy):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    (bundle_copy / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="sha256"):
        with TestClient(create_app(Settings(student_bundle=bundle_copy, teacher_bundle=None))):
            pass
