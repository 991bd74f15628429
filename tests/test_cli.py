"""The `ser` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import voice, encode


def ser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_subcommands():
    out = ser("--help").stdout
    for cmd in ("serve", "predict", "train", "export", "evaluate"):
        assert cmd in out


def test_serving_commands_do_not_import_torch():
    code = ("import sys; from service.cli import build_parser; from service.app import create_app; "
            "import service.inference; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_predict_files(student_bundle, tmp_path, ravdess_clip):
    good = tmp_path / "a.wav"
    good.write_bytes(encode(voice(1.0), 16_000))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope" * 100)
    r = ser("predict", str(ravdess_clip), str(good), str(bad), "--bundle", str(student_bundle.path))
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 1   # one file failed
    assert lines[0]["label"] in student_bundle.labels and lines[1]["label"] in student_bundle.labels
    assert "could not decode" in lines[2]["error"]


@pytest.mark.parametrize("cmd", [["export", "--run", "nowhere", "--out", "x"]])
def test_missing_run_folder_is_a_clear_error(cmd, tmp_path):
    r = ser(*cmd[:2], str(tmp_path / "nowhere"), *cmd[3:])
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr
