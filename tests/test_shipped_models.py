"""The bundles in models/ keep the product's budget: a student of at most 1.1 M parameters whose
served graph is the model its card describes, and the six labels in the design's order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.bundle import load_bundle
from service.labels import LABELS

MODELS = Path(__file__).resolve().parents[1] / "models"
STUDENT_MAX_PARAMETERS = 1_100_000   # docs/design.md: ~1 M parameters or fewer


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if p.is_dir()))
def test_every_shipped_bundle_loads_with_the_label_order(name):
    bundle = load_bundle(MODELS / name)   # sha256 verified
    assert bundle.labels == LABELS and bundle.parameters > 0
    # read back as written: the windowing from bundle.json's top-level keys, nothing lost or added
    assert bundle.to_json() == json.loads((MODELS / name / "bundle.json").read_text())


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if p.is_dir() and p.name.startswith("student")))
def test_the_shipped_student_is_within_its_size_budget(name):
    assert load_bundle(MODELS / name).parameters <= STUDENT_MAX_PARAMETERS
