"""Metrics, calibration and the fold summary on hand-checkable numbers."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import fit_temperature, utterance_probs
from training.metrics import NO_ANSWER, classification_report, expected_calibration_error
from training.records import Utterance
from pipeline.report import pooled

LABELS = ("angry", "disgust", "fear", "happy", "sad", "neutral")


def test_report_on_a_known_confusion():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    rep = classification_report(y_true, y_pred, LABELS)
    assert rep["accuracy"] == pytest.approx(6 / 8)
    assert rep["ua"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)     # classes absent from y_true are left out
    assert rep["per_class_recall"]["angry"] == pytest.approx(0.75)
    assert rep["confusion"][0][:2] == [3, 1] and sum(map(sum, rep["confusion"])) == 8
    f1_angry = 2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4)
    f1_disgust = 2 * 0.5 * 0.5 / 1.0
    assert rep["macro_f1"] == pytest.approx((f1_angry + f1_disgust + 1.0) / 3)


def test_ece():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)


def test_pooled_sums_confusions():
    a = classification_report(np.array([0, 1]), np.array([0, 0]), LABELS)
    b = classification_report(np.array([0, 1]), np.array([0, 1]), LABELS)
    p = pooled([a, b])
    assert p["n"] == 4 and p["per_class_recall"]["disgust"] == pytest.approx(0.5) and p["accuracy"] == 0.75


def test_temperature_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 400)
    records = [Utterance(id=str(i), path="x", speaker="s", label=LABELS[c], corpus="t") for i, c in enumerate(y)]
    # right 60 % of the time but with logits that claim ~99 %: a temperature > 1 must be chosen
    pred = np.where(rng.random(400) < 0.6, y, (y + 1) % 6)
    logits = [np.eye(6)[[p]] * 8.0 for p in pred]
    cal = fit_temperature(logits, records)
    assert cal["temperature"] > 2 and cal["ece_after"] < cal["ece_before"] / 3 and cal["nll_after"] < cal["nll_before"]
    probs = utterance_probs(logits, cal["temperature"])
    assert probs.max(axis=1).mean() == pytest.approx(0.6, abs=0.05)


def test_a_clip_answered_no_speech_is_an_error_of_its_class():
    rep = classification_report(np.array([0, 0, 1, 1]), np.array([0, NO_ANSWER, 1, 1]), LABELS)
    assert rep["n"] == 4 and rep["no_speech"] == 1 and rep["accuracy"] == pytest.approx(3 / 4)
    assert rep["per_class_recall"]["angry"] == pytest.approx(0.5) and sum(map(sum, rep["confusion"])) == 3
    probs = np.array([[0.9, 0.1], [np.nan, np.nan]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.1)
