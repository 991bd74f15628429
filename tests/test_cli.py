"""The `ser` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.audio import encode, voice
from service.shipped import STUDENT
from tests.support.corpora import make_manifest_corpus

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "angry.flac"

# Run `ser` as if torch were not installed: an import of it fails as a missing module does.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from service.cli import main; sys.exit(main())"


def ser(*args: str, without_torch: bool = False) -> subprocess.CompletedProcess:
    cmd = ["-c", WITHOUT_TORCH, *args] if without_torch else ["-m", "service.cli", *args]
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=120)


def test_help_lists_the_subcommands():
    out = ser("--help").stdout
    for cmd in ("serve", "predict", "train", "export", "evaluate"):
        assert cmd in out


def test_without_the_torch_layers_ser_still_serves():
    """The serving image holds service/ only: the other layers' entry points are skipped."""
    code = ("import sys\n"
            "class Absent:  # the import system's answer for a package that is not installed\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name in ('training', 'export', 'pipeline', 'scoring'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Absent())\n"
            "from service.cli import build_parser\n"
            "print(' '.join(build_parser()._subparsers._group_actions[0].choices))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["serve", "predict", "stream"]


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
    assert lines[2]["error"]["code"] == "unsupported_audio" and "could not decode" in lines[2]["error"]["message"]


def ser_elsewhere(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`ser` run in a folder outside the checkout, its code found where an editable install finds it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SER_")}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, "PYTHONPATH": str(ROOT), **env})


def test_predict_in_another_folder_answers_the_example_clip_with_the_shipped_student(tmp_path):
    from service.audio import load_audio
    from service.bundle import load_bundle
    from service.inference import OnnxModel, rounded

    r = ser_elsewhere(tmp_path, "predict", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    [answer] = [json.loads(line) for line in r.stdout.splitlines()]
    shipped = OnnxModel(load_bundle(ROOT / "models" / STUDENT)).predict(load_audio(EXAMPLE))
    assert answer["probabilities"] == {k: rounded(v) for k, v in shipped.probabilities.items()}
    assert answer["label"] == "angry"   # the clip's own label (the README shows this answer)
    assert "CC BY-NC-SA 4.0" in (ROOT / "examples" / "README.md").read_text()   # its attribution beside it


def test_help_says_where_the_default_models_are():
    for cmd in ("serve", "predict"):
        out = " ".join(ser(cmd, "--help").stdout.split())
        assert "SER_MODELS_DIR" in out and str(ROOT / "models") in out.replace("- ", "-")


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_serve_with_a_named_teacher_that_does_not_exist_stops_naming_it(how, tmp_path):
    """A typo never turns the teacher off: student-only is asked for with `none`."""
    args, env = (["--teacher", "/nonexistent"], {}) if how == "flag" else ([], {"SER_TEACHER_BUNDLE": "/nonexistent"})
    r = ser_elsewhere(tmp_path, "serve", "--port", "0", *args, **env)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "no teacher bundle folder at /nonexistent" in r.stderr and "'none'" in r.stderr


@pytest.mark.parametrize("env, named", [({"SER_API_KEY": "short"}, "SER_API_KEY must be at least 16 characters"),
                                        ({"SER_MAX_QUEUE": "-1"}, "SER_MAX_QUEUE: Input should be greater than")])
def test_a_bad_setting_is_named_in_one_line_without_pydantic_s_dump(env, named, tmp_path):
    r = ser_elsewhere(tmp_path, "serve", "--port", "0", **env)
    assert r.returncode == 2 and named in r.stderr, r.stderr
    assert "pydantic" not in r.stderr and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_predict_names_a_missing_file(student_bundle, tmp_path):
    r = ser("predict", str(tmp_path / "missing.wav"), "--bundle", str(student_bundle.path))
    assert r.returncode == 1 and json.loads(r.stdout)["error"] == {
        "code": "unreadable_file", "message": f"{tmp_path / 'missing.wav'}: no such file"}


def test_training_command_without_the_training_extras_names_the_extra(tmp_path):
    """Every subcommand still parses and shows its help; running one that needs torch says what to install."""
    manifest = make_manifest_corpus(tmp_path / "corpus", speakers=8, seconds=0.5)
    assert "--epochs" in ser("train", "--help", without_torch=True).stdout
    r = ser("train", "--corpus", "manifest", "--data", str(manifest), "--out", str(tmp_path / "run"),
            without_torch=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "'torch' is missing" in r.stderr and "pip install 'speech-emotion-distill[train]'" in r.stderr


def test_help_shows_defaults_and_every_argument_has_a_help_text():
    from service.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"ser {name} {action.dest}: no help text"
    assert "(default: 8000)" in ser("serve", "--help").stdout
    assert "(default: 4)" in ser("train", "--help").stdout   # --test-speakers


@pytest.mark.parametrize("cmd", [["export", "--run", "nowhere", "--out", "x"],
                                 ["evaluate", "--run", "nowhere", "--bundle", "models/student"]])
def test_missing_run_folder_is_a_clear_error(cmd, tmp_path):
    r = ser(*cmd[:2], str(tmp_path / "nowhere"), *cmd[3:])
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr
