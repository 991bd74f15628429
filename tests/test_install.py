"""A non-editable install: the wheel built from this tree, installed into a fresh venv, serves
from another folder with the models/ found there (nothing read from the source tree)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from devtools.audio import wav_bytes
from devtools.server import running_server

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "service", "training", "export", "pipeline", "scoring"]


def run(*cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300, **kw).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a new venv holding the wheel. Its dependencies come from the test venv through a
    .pth line (that adds the folder only: the editable install's hook there is not run)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"   # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src))
    [wheel] = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    site = Path(run(str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q", str(wheel))
    return venv / "bin"


def test_the_installed_package_is_not_the_source_tree(installed, tmp_path):
    where = run(str(installed / "python"), "-c", "import service, training; print(service.__file__, training.__file__)",
                cwd=tmp_path)
    assert str(ROOT) not in where and str(installed.parent) in where
    assert "train" in run(str(installed / "ser"), "--help", cwd=tmp_path)   # the layers' entry points


def test_ser_serve_from_another_folder_finds_models_there(installed, student_bundle, teacher_bundle, tmp_path):
    shutil.copytree(student_bundle.path, tmp_path / "models" / "student-int8")   # the default student
    shutil.copytree(teacher_bundle.path, tmp_path / "models" / "teacher")
    with running_server(None, ser=(str(installed / "ser"),), cwd=tmp_path) as (base, proc):
        r = httpx.post(f"{base}/predict", files={"file": ("a.wav", wav_bytes(1.5))}, timeout=30)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{base}/v1/models").json()[1]["name"] == teacher_bundle.name
        assert "<html" in httpx.get(f"{base}/").text.lower()   # the web page is package data in the wheel
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert f"({Path('models') / 'student-int8'})" in proc.stdout.read()


def test_ser_serve_without_models_says_where_it_looked(installed, tmp_path):
    r = subprocess.run([str(installed / "ser"), "serve", "--port", "0"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"no student bundle folder at {tmp_path / 'models' / 'student-int8'}" in r.stderr
