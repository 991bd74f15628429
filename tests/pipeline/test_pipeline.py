"""`ser pipeline` end to end on two generated corpora with a tiny random Whisper encoder: one
run for the module, one test per behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.fallback import MAX_DROP, MAX_SHARE, fold_sets
from pipeline.run import PipelineConfig, run_pipeline
from pipeline.teachers import encoder_stats
from training.runs import checkpoint_probs
from training.teacher_folder import load_teacher_folder, read_kind
from service.audio import load_audio
from service.answer import Models
from service.bundle import load_bundle
from service.inference import OnnxModel
from tests.support.bundles import save_tiny
from tests.support.corpora import make_manifest_corpus
from training.corpora import prepare_manifest, write_corpus_info
from training.frozen_teacher import head_meta
from training.degrade import CONDITIONS
from training.records import Utterance
from training.splits import apply_split, read_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    csvs = {c: make_manifest_corpus(tmp / c, speakers=4) for c in ("a", "b")}
    records = [r for c, path in csvs.items() for r in prepare_manifest(path, corpus=c)]
    # unlabeled transfer clips (as RAVDESS calm/surprised): only the distilled student learns from them
    transfer = [Utterance(id=f"x{r.id}", path=r.path, speaker=r.speaker, label=None, corpus=r.corpus)
                for r in records[::6]]
    cross = {"other": prepare_manifest(make_manifest_corpus(tmp / "other", speakers=1), corpus="other")}
    # positions for the frozen teacher's 6 s windows
    backbone = save_tiny(tmp / "whisper", "whisper", max_source_positions=300)
    cfg = PipelineConfig(backbone=str(backbone), folds=2, teacher={"epochs": 2},
                         student={"epochs": 1, "window_s": 2.0}, degraded_clips=2)
    out = tmp / "run"
    out.mkdir()
    write_corpus_info(out, [("manifest", path) for path in csvs.values()])
    summary = run_pipeline(records, out, cfg, transfer, cross, final=True)
    return {"out": out, "records": records, "transfer": transfer, "cfg": cfg, "summary": summary,
            "args": (records, out, cfg, transfer, cross)}


def test_every_clip_of_every_corpus_is_tested_once_over_the_folds(run):
    rows = run["summary"]["corpora"]
    for corpus in ("a", "b"):
        assert rows[corpus]["kind"] == "k-fold"
        assert rows[corpus]["student"]["n"] == sum(r.corpus == corpus for r in run["records"]) == 24
    tested = [s for f in ("fold0", "fold1") for s in read_split(run["out"] / f / "split.json").test]
    assert sorted(tested) == sorted({r.speaker for r in run["records"]})


def test_folds_split_every_corpus(run):
    for fold in ("fold0", "fold1"):
        split = read_split(run["out"] / fold / "split.json")
        for part in (split.train, split.val, split.test):
            assert {s.split(":")[0] for s in part} == {"a", "b"}


def test_leave_one_corpus_out_tests_a_corpus_no_model_heard(run):
    for corpus, other in (("a", "b"), ("b", "a")):
        split = read_split(run["out"] / f"loco-{corpus}" / "split.json")
        assert {s.split(":")[0] for s in split.test} == {corpus} and len(split.test) == 4
        assert {s.split(":")[0] for s in (*split.train, *split.val)} == {other}
        assert run["summary"]["corpora"][f"{corpus} left out"]["teacher"]["n"] == 24
    assert set(run["summary"]["heldout_mean"]) >= {"teacher", "student", "auto"}


def test_bundles_are_served_as_they_were_trained(run):
    fold = run["out"] / "fold0"
    for name in ("teacher", "student_alone", "student"):
        b = load_bundle(fold / "bundles" / name)
        assert b.role == ("teacher" if name == "teacher" else "student") and b.temperature > 0
        assert b.windowing.pad == ("none" if name == "teacher" else "zero")
        # the corpus's name and licence come from the run, none is baked into export
        assert "RAVDESS" not in json.dumps(b.license) and b.license["data"].startswith("not stated")
    assert load_bundle(fold / "bundles" / "student").name == "litecnn-manifest"
    for name in ("student", "teacher"):
        int8 = load_bundle(fold / "bundles" / f"{name}-int8")
        assert int8.precision == "int8" and "ua_change_vs_float32" in int8.extra["quantization"]
    # the int8 student is checked against its float model on held-out audio: test speakers + cross corpus
    agreement = load_bundle(fold / "bundles" / "student-int8").extra["quantization"]["agreement"]
    split = json.loads((fold / "split.json").read_text())["speakers"]["test"]
    held_out = [r for r in run["records"] if r.speaker in split] + run["args"][4]["other"]
    assert agreement["clips"] == len(held_out) and 0 <= agreement["label_agreement"] <= 1


def test_the_cached_statistics_are_what_the_served_teacher_computes(run):
    fold, rec = run["out"] / "fold0", run["records"][0]
    teacher, windowing = load_teacher_folder(fold / "teacher")
    clip = load_audio(rec.path)
    windows, _ = windowing.windows(clip)
    backbone = Path(head_meta(fold / "teacher")["backbone"])
    cached = encoder_stats(run["out"], backbone, [rec], {rec.id: clip})[rec.id]
    with torch.no_grad():
        direct = teacher.stats(torch.from_numpy(windows)).numpy()
    assert cached.dtype == np.float16 and np.allclose(direct, cached, rtol=2e-3, atol=1e-3)


def test_transfer_clips_teach_only_the_distilled_student(run):
    train = set(read_split(run["out"] / "fold0" / "split.json").train)
    used = {n: json.loads((run["out"] / "fold0" / n / "transfer.json").read_text())["clips"]
            for n in ("student_kd", "student_alone")}
    assert used == {"student_kd": sum(r.speaker in train for r in run["transfer"]), "student_alone": 0}
    assert used["student_kd"] > 0


def test_every_model_is_scored_on_each_corpus_clean_degraded_and_on_the_cross_corpus(run):
    sets = json.loads((run["out"] / "summary.json").read_text())
    assert set(sets["degraded"]) == {f"{c}-{corpus}" for c in CONDITIONS for corpus in ("a", "b")}
    row = sets["corpora"]["other never trained on"]
    assert {"teacher", "teacher-int8", "student", "student-int8", "auto"} <= set(row)
    assert len(row["student"]["per_split"]) == 4   # two folds and two left-out corpora
    assert 0 <= row["auto"]["teacher_share"] <= 1
    report = (run["out"] / "report.md").read_text()
    assert "| a left out |" in report and "mean over held-out corpora" in report


def test_final_models_carry_the_estimates_in_their_cards(run):
    final = run["out"] / "final"
    split = json.loads((final / "split.json").read_text())["speakers"]
    assert split["test"] == [] and len(split["val"]) == 2 and len(split["train"]) == 6
    assert sorted(p.name for p in (final / "bundles").iterdir()) == ["student", "student-int8", "teacher", "teacher-int8"]
    student = load_bundle(final / "bundles" / "student")
    assert student.metrics["estimates"]["a"]["ua"] == run["summary"]["corpora"]["a"]["student"]["ua"]
    assert set(student.metrics["cross_corpus_ua"]) == {"other"}
    card = (final / "bundles" / "teacher" / "MODEL_CARD.md").read_text()
    assert "no held-out test set" in card and "b left out" in card
    assert not (final / "student_alone").exists()


def test_the_int8_teachers_weights_fit_in_7_bits(run):
    """8-bit weights saturate onnxruntime's uint8 x int8 products on CPUs without VNNI (export.quantize)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(run["out"] / "final" / "bundles" / "teacher-int8" / "model.onnx"))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and 32 < max(int(np.abs(w).max()) for w in weights) <= 64


def test_the_fallback_threshold_is_chosen_on_the_folds_and_carried_by_the_final_students(run):
    records, out, cfg, _, cross = run["args"]
    sets = fold_sets([out / "fold0", out / "fold1"], records, cross, cfg.degraded_clips)
    assert set(sets) == {"test-a", "test-b", "cross-other"} and len(sets["cross-other"]) == 2   # one per fold model
    assert len(sets["test-a"][0]["labels"]) == sum(r.corpus == "a" for r in records)       # every clip once
    fallback, names = run["summary"]["fallback"], list(sets)
    base, best = fallback["curve"][0], fallback["chosen"]
    allowed = [r for r in fallback["curve"]
               if r["share"] <= MAX_SHARE and all(r[n] >= base[n] - MAX_DROP for n in names)]
    assert best in allowed and best["mean"] == max(r["mean"] for r in allowed)
    assert best["threshold"] == fallback["threshold"] and base["threshold"] == 0 and base["share"] == 0
    bundles = out / "final" / "bundles"
    for name in ("student", "student-int8"):
        student = OnnxModel(load_bundle(bundles / name))
        assert Models(student, None).threshold == fallback["threshold"]
        assert Models(student, None, fallback_threshold=0.7).threshold == 0.7   # SER_FALLBACK_THRESHOLD wins
    assert load_bundle(bundles / "teacher").fallback_threshold is None
    assert "## `model=auto`: the fallback threshold" in (out / "report.md").read_text()


def test_a_resumed_run_retrains_and_re_exports_nothing(run):
    stamp = {p: p.stat().st_mtime_ns for p in run["out"].rglob("*.onnx")}
    again = run_pipeline(*run["args"], final=True)
    assert {p: p.stat().st_mtime_ns for p in run["out"].rglob("*.onnx")} == stamp
    assert json.dumps(again["heldout_mean"]) == json.dumps(run["summary"]["heldout_mean"])


def test_an_unknown_teacher_kind_is_refused():
    with pytest.raises(ValueError, match="teacher_kind 'best'"):
        PipelineConfig(teacher_kind="best")


def test_ser_evaluate_takes_the_frozen_teacher_folder(run):
    """`ser evaluate --checkpoint` reads a teacher folder through checkpoint_probs."""
    fold = run["out"] / "fold0"
    assert read_kind(fold / "teacher") == "frozen"
    test = apply_split(run["records"], read_split(fold / "split.json"))["test"][:2]
    probs = checkpoint_probs(fold / "teacher", test)
    assert probs.shape == (2, 6) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_view_targets_are_the_teachers_answers_on_each_views_audio(run):
    """With view_targets, the fold teacher's soft labels and features are per cached view: its
    head on the encoder statistics of the audio the view was cut from, and the student trains on them."""
    from dataclasses import replace

    from pipeline.run import train_student_stage
    from pipeline.teachers import view_stats, view_targets
    from training.train_student import StudentConfig, augment_of
    from training.views import teacher_inputs, view_file, views_folder

    fold = run["out"] / "fold0"
    parts = apply_split(run["records"], read_split(fold / "split.json"))
    records = parts["train"][:4]
    clips = {r.id: load_audio(r.path) for r in [*records, *parts["val"]]}
    scfg = StudentConfig.from_dict({"window_s": 2.0, "views": 2, "pad": "repeat", "view_targets": True,
                                    "alpha": 0.5, "feature_kd": 1.0, "epochs": 1})
    logits, feats = view_targets(fold, fold / "teacher", records, clips, scfg)
    assert logits.shape == (4, 2, 6) and feats.shape[:2] == (4, 2)

    teacher, _ = load_teacher_folder(fold / "teacher")
    folder = views_folder(run["out"] / "views", scfg.windowing, augment_of(scfg), scfg.seed, scfg.views)
    r = records[1]
    heard = teacher_inputs(np.load(view_file(folder, r.id)), scfg.windowing.trimmed(clips[r.id]), r.id,
                           augment_of(scfg), scfg.seed, "repeat")
    cached = view_stats(run["out"], Path(head_meta(fold / "teacher")["backbone"]), [r], clips, scfg)[r.id]
    with torch.no_grad():
        direct = np.concatenate([teacher.stats(torch.from_numpy(x[None])).numpy() for x in heard])
        assert np.allclose(teacher.head(torch.from_numpy(cached.astype(np.float32))).numpy(), logits[1])
    assert np.allclose(direct, cached, rtol=2e-3, atol=1e-3)
    assert not np.allclose(logits[1, 0], logits[1, 1])   # two views, two answers

    small = replace(scfg, model=replace(scfg.model, channels=[16, 16], bottleneck=16, hidden=16))
    train_student_stage(fold, "student_views", small, {**parts, "train": records}, [], clips, run["cfg"],
                        fold / "teacher")
    assert (fold / "student_views" / "student.pt").exists()
    with pytest.raises(ValueError, match="views"):
        StudentConfig.from_dict({"view_targets": True})
