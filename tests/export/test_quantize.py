"""int8 student: static quantization calibrated on real audio, and the agreement check that
compares it with its float model on held-out clips."""

from __future__ import annotations

import json

import pytest

from export.cards import model_card
from export.quantize import AGREEMENT_BAR, agreement, quantize_bundle
from tests.support.bundles import make_bundle
from devtools.data import RAVDESS_DIR
from training.corpora import prepare_corpus


@pytest.fixture(scope="module")
def clips():
    if not (RAVDESS_DIR / "manifest.csv").is_file():
        pytest.skip(f"real RAVDESS audio not present at {RAVDESS_DIR}")
    records = [r for r in prepare_corpus("ravdess", RAVDESS_DIR) if r.speaker in ("ravdess:01", "ravdess:02")]
    return records[:4], records[-6:]   # calibration clips, held-out clips (another speaker)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, clips):
    root = tmp_path_factory.mktemp("quant")
    make_bundle(root / "float")
    quantize_bundle(root / "float", root / "int8", clips[0])
    return root / "float", root / "int8"


def test_a_model_agrees_with_itself(pair, clips):
    a = agreement(pair[0], pair[0], clips[1])
    assert a == {"clips": 6, "label_agreement": 1.0, "mean_prob_distance": 0.0, "max_prob_distance": 0.0,
                 "meets_bar": True}


def test_int8_agreement_is_measured_on_the_held_out_clips(pair, clips):
    a = agreement(*pair, clips[1])
    assert a["clips"] == 6
    assert a["label_agreement"] * 6 == pytest.approx(round(a["label_agreement"] * 6))   # a share of 6 clips
    assert 0.0 < a["mean_prob_distance"] <= a["max_prob_distance"] <= 1.0   # int8 is not bit-identical
    assert a["meets_bar"] == (a["label_agreement"] >= AGREEMENT_BAR)


def test_the_card_says_when_int8_is_below_the_bar(pair):
    meta = json.loads((pair[1] / "bundle.json").read_text())
    meta["extra"]["quantization"]["agreement"] = {"clips": 100, "label_agreement": 0.9, "mean_prob_distance": 0.01,
                                                  "max_prob_distance": 0.2, "meets_bar": False}
    card = model_card({**meta, "license": {"weights": "test only", "data": "RAVDESS"}}, None, "tiny")
    assert "90.0% of 100 held-out clips" in card and "serve the float32 bundle" in card
