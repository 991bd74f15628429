"""Scores on other corpora and degraded audio, and `model=auto` from the two bundles' answers."""

from __future__ import annotations

from tests.support.corpora import make_manifest_corpus
from training.corpora import prepare_manifest
from training.robustness import evaluate_sets, robustness_sets


def test_sets_score_every_bundle_and_auto_and_are_cached(tmp_path, unsure_student_bundle, teacher_bundle):
    records = prepare_manifest(make_manifest_corpus(tmp_path / "c", speakers=1), corpus="c")
    bundles = {"student": unsure_student_bundle.path, "teacher": teacher_bundle.path}
    sets = robustness_sets(records[:3], {"c": records}, degraded_clips=2)
    assert set(sets) >= {"cross-c", "test-c", "degraded-mp3_32k-c"}
    assert len(sets["test-c"][0]) == 3 and len(sets["degraded-mp3_32k-c"][0]) == 2
    first = evaluate_sets(bundles, tmp_path / "eval", sets)
    auto = first["cross-c"]["auto"]   # an unsure student: every clip goes to the always-sad teacher
    assert auto["teacher_share"] == 1.0 and auto["per_class_recall"]["sad"] == 1.0
    assert first["cross-c"]["teacher"]["ua"] == auto["ua"]
    cached = tmp_path / "eval" / "teacher" / "sets" / "degraded-mp3_32k-c.npy"
    stamp = cached.stat().st_mtime_ns
    assert evaluate_sets(bundles, tmp_path / "eval", sets) == first and cached.stat().st_mtime_ns == stamp
    assert robustness_sets([], {"c": records}).keys() == {"cross-c"}
