"""One precedence order for every command: the config class's defaults, then the config file
(or, for the service, the SER_* variables), then the flags the user gave. A value from the file
survives when its flag is absent; a flag that is given wins."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.cli import pipeline_config
from pipeline.run import PipelineConfig
from service.cli import build_parser, settings_from
from service.shipped import STUDENT
from training.cli import student_config
from training.config import from_dict, read_config
from training.train_teacher import TeacherConfig


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def config_file(tmp_path, values: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return str(path)


def test_pipeline_config_file_values_survive_absent_flags(tmp_path):
    cfg_path = config_file(tmp_path, {"folds": 3, "seed": 7, "val_speakers": 1, "run_folds": [1], "backbone": "b",
                                      "alpha": 0.3})
    cfg = pipeline_config(parse("pipeline", "--out", "runs/x", "--config", cfg_path))
    assert (cfg.folds, cfg.seed, cfg.val_speakers, cfg.run_folds, cfg.backbone, cfg.alpha) == (3, 7, 1, [1], "b", 0.3)


def test_pipeline_flags_given_win_over_the_config_file(tmp_path):
    cfg_path = config_file(tmp_path, {"folds": 3, "seed": 7, "val_speakers": 1, "alpha": 0.3})
    cfg = pipeline_config(parse("pipeline", "--out", "runs/x", "--config", cfg_path, "--folds", "5", "--seed", "0",
                                "--val-speakers", "2", "--run-folds", "0", "2", "--backbone", "flag"))
    assert (cfg.folds, cfg.seed, cfg.val_speakers, cfg.run_folds, cfg.backbone) == (5, 0, 2, [0, 2], "flag")
    assert cfg.alpha == 0.3   # no flag: the file's


def test_pipeline_without_file_or_flags_is_the_dataclass_default():
    assert pipeline_config(parse("pipeline", "--out", "runs/x")) == PipelineConfig()


def test_train_config_file_then_flags(tmp_path):
    cfg_path = config_file(tmp_path, {"epochs": 3, "seed": 5, "lr": 0.01})
    cfg = student_config(parse("train", "--out", "runs/x", "--config", cfg_path))
    assert (cfg.epochs, cfg.seed, cfg.lr, cfg.alpha) == (3, 5, 0.01, 1.0)
    cfg = student_config(parse("train", "--out", "runs/x", "--config", cfg_path, "--epochs", "9", "--seed", "0"))
    assert (cfg.epochs, cfg.seed, cfg.lr) == (9, 0, 0.01)


def test_train_teacher_reads_every_field_from_its_config_file(tmp_path):
    """`python -m training.train_teacher` has no flag for a config field: the file decides."""
    values = {"epochs": 2, "lr": 1e-4, "pad": "zero", "spec_augment": [1, 2, 3, 4]}
    cfg = from_dict(TeacherConfig, read_config(config_file(tmp_path, values)))
    assert {k: getattr(cfg, k) for k in values} == values


def test_serve_and_predict_take_ser_variables_unless_a_flag_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("SER_STUDENT_BUNDLE", "from/env")
    monkeypatch.setenv("SER_INTRA_OP_THREADS", "3")
    assert str(settings_from(parse("serve")).student_bundle) == "from/env"
    assert str(settings_from(parse("serve", "--student", "from/flag")).student_bundle) == "from/flag"
    predict = settings_from(parse("predict", "a.wav"))
    assert (str(predict.student_bundle), predict.intra_op_threads) == ("from/env", 3)
    predict = settings_from(parse("predict", "a.wav", "--bundle", "b", "--threads", "1"))
    assert (str(predict.student_bundle), predict.intra_op_threads) == ("b", 1)


def test_default_bundles_are_in_ser_models_dir_and_none_asks_for_the_student_alone(monkeypatch, tmp_path):
    shipped = settings_from(parse("serve"))
    assert shipped.models_dir == Path(__file__).resolve().parents[1] / "models"   # found from the code, not the cwd
    (tmp_path / "teacher").mkdir()
    monkeypatch.setenv("SER_MODELS_DIR", str(tmp_path))
    s = settings_from(parse("serve"))
    assert (s.student_bundle, s.teacher_bundle) == (tmp_path / STUDENT, tmp_path / "teacher")
    assert settings_from(parse("serve", "--teacher", "none")).teacher_bundle is None
    monkeypatch.setenv("SER_TEACHER_BUNDLE", "None")
    assert settings_from(parse("serve")).teacher_bundle is None
    assert settings_from(parse("serve", "--teacher", "t")).teacher_bundle == Path("t")   # the flag wins
    monkeypatch.delenv("SER_TEACHER_BUNDLE")
    (tmp_path / "teacher").rmdir()
    assert settings_from(parse("serve")).teacher_bundle is None   # no teacher/ in it: student-only, not an error


def test_unknown_keys_are_errors_that_list_the_fields(tmp_path):
    with pytest.raises(ValueError, match=r"unknown PipelineConfig keys \['flods'\]; known: \[.*'folds'"):
        pipeline_config(parse("pipeline", "--out", "runs/x", "--config", config_file(tmp_path, {"flods": 3})))
    with pytest.raises(ValueError, match=r"unknown LiteCNNConfig keys \['channelz'\]"):
        student_config(parse("train", "--out", "r", "--config", config_file(tmp_path, {"model": {"channelz": [8]}})))
    with pytest.raises(ValueError, match="one JSON object"):
        read_config(config_file(tmp_path, [1, 2]))


def test_from_dict_builds_nested_config_fields():
    @dataclass
    class Inner:
        width: int = 1

    @dataclass
    class Outer:
        inner: Inner = field(default_factory=Inner)
        name: str = "x"

    assert from_dict(Outer, {"inner": {"width": 4}}) == Outer(Inner(4))
