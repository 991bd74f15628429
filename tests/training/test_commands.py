"""`ser train` -> `ser export` -> `ser evaluate` -> `ser predict` on a generated corpus."""

from __future__ import annotations

import json

import pytest

from service.bundle import load_bundle
from service.cli import main
from service.labels import LABELS
from tests.support.corpora import make_manifest_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    manifest = make_manifest_corpus(tmp_path_factory.mktemp("corpus"))
    (manifest.parent / "LICENSE").write_text("\nCC0 1.0\n\nThe full text of the licence ...\n")
    return manifest


def test_train_export_evaluate_predict(corpus, tmp_path, capsys):
    run, bundle_dir = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--corpus", "manifest", "--data", str(corpus), "--out", str(run),
                 "--epochs", "1", "--val-speakers", "2", "--test-speakers", "2"]) == 0
    split = json.loads((run / "split.json").read_text())
    assert len(split["speakers"]["test"]) == 2 and not set(split["speakers"]["test"]) & set(split["speakers"]["train"])
    assert main(["export", "--run", str(run), "--out", str(bundle_dir)]) == 0
    b = load_bundle(bundle_dir)
    assert b.role == "student" and b.metrics["test"]["n"] == 12 and b.temperature > 0
    # the corpus's name and licence come from the run, as its adapter described them
    assert b.name == "litecnn-manifest" and b.training["data"] == "manifest"
    assert b.license["data"].startswith("CC0 1.0 (LICENSE of the corpus)") and "CC0 1.0" in b.license["weights"]
    assert "RAVDESS" not in (bundle_dir / "MODEL_CARD.md").read_text()
    assert b.extra["parity_rel_logit_error"] <= 1e-4 and "calibration" in b.extra
    assert "Metrics on the test speakers" in (bundle_dir / "MODEL_CARD.md").read_text()
    assert main(["evaluate", "--bundle", str(bundle_dir), "--run", str(run)]) == 0
    report = run / "eval" / "bundle"
    assert json.loads((report / "metrics.json").read_text())["ua"] == pytest.approx(b.metrics["test"]["ua"])
    assert (report / "confusion.png").stat().st_size > 1000
    assert main(["evaluate", "--checkpoint", str(run / "student" / "student.pt"), "--run", str(run),
                 "--out", str(tmp_path / "ckpt_eval")]) == 0
    torch_ua = json.loads((tmp_path / "ckpt_eval" / "metrics.json").read_text())["ua"]
    # one window per clip, so the temperature cannot move the argmax: torch and ONNX agree
    assert torch_ua == pytest.approx(b.metrics["test"]["ua"], abs=0.09)   # at most a near-tie flips
    capsys.readouterr()
    assert main(["predict", str(corpus.parent / "spk0_sad.wav"), "--bundle", str(bundle_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in LABELS
