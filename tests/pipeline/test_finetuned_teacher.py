"""The fine-tuned teacher kind end to end, on a tiny random wav2vec2 (the path of a user with a
GPU and their own wav2vec2/HuBERT/WavLM weights): train -> export -> bundle -> served answer,
and the teacher folder says its kind, which the one loader reads."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.run import PipelineConfig, run_pipeline
from service.audio import load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from tests.support.bundles import save_tiny
from tests.support.corpora import make_manifest_corpus
from training.corpora import prepare_manifest, write_corpus_info
from training.runs import checkpoint_probs
from training.splits import apply_split, read_split
from training.teacher_folder import read_kind

pytestmark = pytest.mark.slow


def test_a_fine_tuned_wav2vec2_teacher_is_trained_exported_and_served(tmp_path):
    csv = make_manifest_corpus(tmp_path / "a", speakers=4)
    records = prepare_manifest(csv, corpus="a")
    cfg = PipelineConfig(backbone=str(save_tiny(tmp_path / "w2v", "wav2vec2")), teacher_kind="finetune",
                         folds=2, run_folds=[0], loco=False, split_students=False, degraded_clips=1,
                         teacher={"epochs": 1, "batch_size": 4, "window_s": 1.0, "hop_s": 1.0})
    out = tmp_path / "run"
    out.mkdir()
    write_corpus_info(out, [("manifest", csv)])
    run_pipeline(records, out, cfg)

    fold = out / "fold0"
    assert read_kind(fold / "teacher") == "finetune"
    bundle = load_bundle(fold / "bundles" / "teacher")
    assert bundle.role == "teacher" and bundle.windowing.window_s == 1.0
    test = apply_split(records, read_split(fold / "split.json"))["test"][:3]
    served = np.stack([[OnnxModel(bundle).predict(load_audio(r.path)).probabilities[label]
                        for label in bundle.labels] for r in test])
    # the torch checkpoint, through the same front end, gives the probabilities the bundle serves
    # (before calibration: compare the argmax, which the temperature does not change)
    assert np.array_equal(served.argmax(1), checkpoint_probs(fold / "teacher", test).argmax(1))
    assert np.allclose(served.sum(1), 1, atol=1e-3)
