"""`ser pipeline` end to end on a generated corpus with a tiny random Whisper teacher."""

from __future__ import annotations

import json
from dataclasses import replace
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.audio import load_audio
from service.bundle import load_bundle
from tests.support.bundles import save_tiny
from tests.support.corpora import make_manifest_corpus
from training.corpora import prepare_manifest
from training.degrade import CONDITIONS
from training.evaluate import checkpoint_probs
from training.evaluate import predict_probs, report_from_probs
from pipeline.run import PipelineConfig, run_pipeline
from pipeline.soft_labels import soft_labels, teacher_logits
from training.records import Utterance
from training.splits import apply_split, read_split
from training.train_student import StudentConfig
from training.teacher import load_teacher

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_resumes(tmp_path):
    records = prepare_manifest(make_manifest_corpus(tmp_path / "corpus", speakers=6))
    backbone = save_tiny(tmp_path / "whisper", "whisper")
    cfg = PipelineConfig(backbone=str(backbone), folds=2, teacher={"epochs": 1, "window_s": 2.0, "hop_s": 1.0,
                                                                    "pad": "repeat", "balanced": True},
                         student={"epochs": 1, "window_s": 2.0})
    out = tmp_path / "run"
    # unlabeled transfer clips (as RAVDESS calm/surprised): only the distilled student learns from them
    transfer = [Utterance(id=f"x{r.id}", path=r.path, speaker=r.speaker, label="neutral", corpus="t")
                for r in records[::6]]
    cross = {"other": prepare_manifest(make_manifest_corpus(tmp_path / "other", speakers=1), corpus="other")}
    summary = run_pipeline(records, out, cfg, transfer, cross, final=True)
    assert [f["fold"] for f in summary["folds"]] == ["fold0", "fold1"]
    # every clip is tested exactly once across the folds
    assert summary["student"]["pooled"]["n"] == len(records) == 36
    tested = [s for f in summary["folds"] for s in f["test_speakers"]]
    assert sorted(tested) == sorted({r.speaker for r in records})
    for name in ("teacher", "student_alone", "student"):
        b = load_bundle(out / "fold0" / "bundles" / name)
        assert b.role == ("teacher" if name == "teacher" else "student") and b.temperature > 0
        assert (out / "fold0" / "eval" / name / "confusion.png").exists()
        assert b.pad == ("repeat" if name == "teacher" else "zero")   # each model served as it was trained
        # the corpus's name and licence come from the run (its records here), none is baked into export
        assert "RAVDESS" not in json.dumps(b.license) and b.license["data"].startswith("not stated")
    assert load_bundle(out / "fold0" / "bundles" / "student").name == "litecnn-manifest"
    for fold in ("fold0", "fold1"):
        train = set(json.loads((out / fold / "split.json").read_text())["speakers"]["train"])
        used = {n: json.loads((out / fold / n / "transfer.json").read_text())["clips"] for n in ("student_kd", "student_alone")}
        assert used == {"student_kd": sum(r.speaker in train for r in transfer), "student_alone": 0}
        assert used["student_kd"] > 0
    for name in ("student", "teacher"):
        int8 = load_bundle(out / "fold0" / "bundles" / f"{name}-int8")
        assert int8.precision == "int8" and "ua_change_vs_float32" in int8.extra["quantization"]
        assert int8.model_path.stat().st_size < load_bundle(out / "fold0" / "bundles" / name).model_path.stat().st_size

    # every model on the other corpus and on the degraded test speakers; auto from the two answers
    sets = summary["sets"]
    assert set(sets) == {"cross-other", "test", *(f"degraded-{c}" for c in CONDITIONS)}
    assert sets["test"]["student"]["pooled_ua"] == summary["student"]["pooled"]["ua"]   # the same answers
    assert set(sets["cross-other"]) == {"teacher", "teacher-int8", "student_alone", "student", "student-int8", "auto"}
    assert 0 <= sets["cross-other"]["auto"]["teacher_share"] <= 1
    assert len(sets["degraded-mp3_32k"]["student"]["per_fold"]) == 2
    assert "| cross-other |" in (out / "report.md").read_text()

    # the final models: every speaker but the validation ones, no test set, the k-fold estimate in the card
    final_split = json.loads((out / "final" / "split.json").read_text())["speakers"]
    assert final_split["test"] == [] and len(final_split["val"]) == 2 and len(final_split["train"]) == 4
    assert sorted((p.name for p in (out / "final" / "bundles").iterdir())) == ["student", "student-int8", "teacher", "teacher-int8"]
    final_student = load_bundle(out / "final" / "bundles" / "student")
    assert final_student.metrics["kfold_estimate"]["ua_pooled"] == summary["student"]["pooled"]["ua"]
    assert set(final_student.metrics["cross_corpus_ua"]) == {"other"}
    card = (out / "final" / "bundles" / "teacher" / "MODEL_CARD.md").read_text()
    assert "no held-out test set" in card and "all 2 folds of the cross-validation" in card
    assert not (out / "final" / "student_alone").exists()
    assert len(list((out / "fold0" / "teacher_logits").glob("*.npz"))) == 1
    assert "| pooled |" in (out / "report.md").read_text()
    card = (out / "fold0" / "bundles" / "student" / "MODEL_CARD.md").read_text()
    assert "student alone" in card and "Distillation gain" in card

    curve = subprocess.run([sys.executable, "-m", "experiments.fallback_curve", "--fold", str(out / "fold0"),
                            "--student", str(out / "fold0" / "bundles" / "student"),
                            "--teacher", str(out / "fold0" / "bundles" / "teacher")],
                           capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "| 0 | 0% |" in curve and "| 1 | 100% |" in curve
    teacher_ua = summary["folds"][0]["teacher"]["ua"]
    assert curve.strip().splitlines()[-1].endswith(f"| {teacher_ua:.3f} |")   # all clips to the teacher

    # a teacher recipe tried on one fold: the fold's own teacher scored as the baseline, not retrained
    other = make_manifest_corpus(tmp_path / "other", speakers=1)
    tried = subprocess.run([sys.executable, "-m", "experiments.teacher_recipe", "--fold", str(out / "fold0"),
                            "--out", str(out / "fold0" / "teacher"), "--cross", str(other)],
                           capture_output=True, text=True, cwd=REPO, check=True).stdout
    tried = json.loads(tried.strip().splitlines()[-1])
    fold0_test = apply_split(records, read_split(out / "fold0" / "split.json"))["test"]
    probs = checkpoint_probs(out / "fold0" / "teacher" / "best", fold0_test)
    assert tried["train_s"] == 0 and tried["test_ua"] == report_from_probs(probs, fold0_test)["ua"]

    # `ser evaluate --checkpoint` on the teacher windows and pads as the teacher was trained
    test = apply_split(records, read_split(out / "fold0" / "split.json"))["test"][:4]
    best, clips = out / "fold0" / "teacher" / "best", [load_audio(r.path) for r in test]
    expected = predict_probs(load_teacher(best), clips, 2.0, 1.0, True, "repeat")
    assert np.allclose(checkpoint_probs(best, test), expected, atol=1e-6)

    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.onnx")}
    again = run_pipeline(records, out, cfg, transfer, cross, final=True)   # resumes: nothing is retrained or re-exported
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.onnx")} == stamp
    assert json.dumps(again["kd_gain"]) == json.dumps(summary["kd_gain"])

    # a student interrupted after its first best epoch has student.pt but no history.json: retrained
    kd = out / "fold1" / "student_kd"
    (kd / "history.json").unlink()
    for stale in ("bundles", "eval"):
        shutil.rmtree(out / "fold1" / stale)
    before = (kd / "student.pt").stat().st_mtime_ns
    run_pipeline(records, out, cfg, transfer)
    assert (kd / "history.json").exists() and (kd / "student.pt").stat().st_mtime_ns != before

    # the final student again, from out-of-fold soft labels: each fold teacher labels its test speakers' clips
    final = out / "final"
    for stale in [final / "student_kd", *(final / "bundles").glob("student*"), *(final / "eval").glob("student*")]:
        shutil.rmtree(stale)
    run_pipeline(records, out, replace(cfg, final_soft_labels="oof"), transfer, final=True)
    assert (final / "student_kd" / "history.json").exists() and (final / "bundles" / "student-int8").exists()
    final_train = set(read_split(final / "split.json").train)
    for fold in ("fold0", "fold1"):
        labelled = set(np.load(next((out / fold / "teacher_logits").glob("*.npz"))).files)
        test = set(read_split(out / fold / "split.json").test)
        heard = {r.id for r in [*records, *transfer] if r.speaker in test and r.speaker in final_train}
        assert heard and heard <= labelled

    # out-of-fold soft labels: each clip from the fold teacher that never heard its speaker
    clips = [load_audio(r.path) for r in records]
    scfg = StudentConfig.from_dict(cfg.student)
    oof = soft_labels(final, "oof", 2, records, clips, scfg)
    per_fold = []
    for fold in ("fold0", "fold1"):
        best = out / fold / "teacher" / "best"
        per_fold.append(teacher_logits(best, records, clips, out / fold / "teacher_logits", scfg))
        test = set(read_split(out / fold / "split.json").test)
        mine = [i for i, r in enumerate(records) if r.speaker in test]
        assert mine and np.allclose(oof[mine], per_fold[-1][mine])
    assert np.allclose(soft_labels(final, "ensemble", 2, records, clips, scfg), np.mean(per_fold, axis=0))


def test_a_partial_run_says_how_many_folds_ran():
    from pipeline.report import scope
    assert scope({"folds": [{}] * 4, "k": 4}) == "all 4 folds"
    assert scope({"folds": [{}], "k": 4}) == "1 of 4 folds"


def test_fold_soft_labels_need_every_fold_teacher(tmp_path):
    from pipeline.soft_labels import fold_teachers
    (tmp_path / "fold0" / "teacher").mkdir(parents=True)
    (tmp_path / "fold0" / "teacher" / "COMPLETE").touch()
    with pytest.raises(ValueError, match="all 2 folds; fold1 has none"):
        fold_teachers(tmp_path, 2)
    with pytest.raises(ValueError, match="final_soft_labels 'best'"):
        PipelineConfig(final_soft_labels="best")
