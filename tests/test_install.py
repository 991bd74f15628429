"""A non-editable install: the wheel built from this tree, installed into a fresh venv, serves
from another folder with the models SER_MODELS_DIR names (nothing read from the source tree);
each extra installs what its commands import."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
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


def test_an_installed_ser_serve_takes_its_models_from_ser_models_dir(installed, student_bundle, teacher_bundle, tmp_path):
    """A wheel holds no models: SER_MODELS_DIR names their folder (as the Docker image does)."""
    models = tmp_path / "models"
    shutil.copytree(student_bundle.path, models / "student")   # the default student
    shutil.copytree(teacher_bundle.path, models / "teacher")
    (tmp_path / "elsewhere").mkdir()
    with running_server(None, ser=(str(installed / "ser"),), cwd=tmp_path / "elsewhere",
                        settings={"SER_MODELS_DIR": str(models)}) as (base, proc):
        r = httpx.post(f"{base}/predict", files={"file": ("a.wav", wav_bytes(1.5))}, timeout=30)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{base}/v1/models").json()[1]["name"] == teacher_bundle.name
        assert "<html" in httpx.get(f"{base}/").text.lower()   # the web page is package data in the wheel
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert f"({models / 'student'})" in proc.stdout.read()


def test_an_installed_ser_serve_without_models_says_where_it_looked(installed, tmp_path):
    r = subprocess.run([str(installed / "ser"), "serve", "--port", "0"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    site = run(str(installed / "python"), "-c", "import service, pathlib; print(pathlib.Path(service.__file__).parents[1])",
               cwd=tmp_path)
    assert f"no student bundle folder at {Path(site.strip()) / 'models' / 'student'}" in r.stderr
    assert "SER_MODELS_DIR" in r.stderr

# Distributions whose import name is not their name, lower-cased with '-' as '_'.
IMPORT_NAMES = {"python-multipart": "python_multipart"}
# Each extra and the packages whose every module it must be enough to import.
EXTRA_LAYERS = {"serve": ["service"], "train": ["training", "export", "pipeline"], "score": ["scoring"]}
LATER = {"scoring.ray_engine"}   # imports ray: the `scale` extras', checked when it runs (`needs_extra`)

BLOCKED_IMPORT = """
import importlib, pkgutil, sys
blocked = set(sys.argv[1].split(","))
class Absent:   # the import system's answer for a distribution that is not installed
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
for pkg in sys.argv[2].split(","):
    for m in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
        if m.name not in sys.argv[3].split(","):
            try:
                importlib.import_module(m.name)
            except ModuleNotFoundError as e:
                print(m.name, e.name)
"""


def requirement_imports(extra: str | None, project: dict) -> set[str]:
    """Import names of what `pip install .[extra]` installs of this project's own lists (its
    self-references followed; None: the base dependencies)."""
    reqs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    names = set()
    for req in reqs:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group().lower()
        if name == project["name"]:
            for inner in re.search(r"\[(.*)\]", req).group(1).split(","):
                names |= requirement_imports(inner.strip(), project)
        else:
            names.add(IMPORT_NAMES.get(name, name.replace("-", "_")))
    return names if extra is None else names | requirement_imports(None, project)


@pytest.mark.parametrize("extra", sorted(EXTRA_LAYERS))
def test_each_extra_installs_what_its_commands_import(extra):
    """Every module of the layers an extra serves imports with the packages of that extra alone:
    those of the other extras are made absent. (`ser train` once told users to install
    `[train]`, which lacked onnxruntime.)"""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    others = set().union(*(requirement_imports(e, project) for e in project["optional-dependencies"]))
    blocked = others - requirement_imports(extra, project)
    assert blocked, "nothing to make absent"
    r = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, ",".join(sorted(blocked)), ",".join(EXTRA_LAYERS[extra]),
                        ",".join(LATER)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "", f"modules that need a package [{extra}] does not install (module, package):\n{r.stdout}"
