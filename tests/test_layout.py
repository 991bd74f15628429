"""Where code lives, read from the source: tools apart from tests, the service apart from tools,
one place that reads a process's CPU time and memory."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "node_modules"}


def python_files(*, under: Path = ROOT, skip: frozenset[str] = frozenset({"tests"})) -> list[Path]:
    return [p for p in under.rglob("*.py") if not (SKIP | skip) & set(p.relative_to(ROOT).parts)]


def imported(path: Path) -> set[str]:
    """Top-level package of every import in the file (function-local ones included)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_outside_tests_imports_tests():
    files = python_files()
    assert any(p.parts[-2] == "benchmarks" for p in files) and any(p.parts[-2] == "devtools" for p in files)
    offenders = [str(p.relative_to(ROOT)) for p in files if "tests" in imported(p)]
    assert not offenders, f"import tests outside tests/ (move what they need to devtools/): {offenders}"


def test_the_service_never_imports_the_dev_tools():
    offenders = [str(p.relative_to(ROOT)) for p in python_files(under=ROOT / "service")
                 if {"devtools", "benchmarks"} & imported(p)]
    assert not offenders


def test_process_cpu_and_memory_are_read_in_one_place():
    """devtools/process.py (psutil) is the one reader; nothing else opens /proc."""
    readers = [str(p.relative_to(ROOT)) for p in python_files(skip=frozenset())
               if p != Path(__file__).resolve() and re.search(r"[\"']/proc/", p.read_text())]
    assert readers == [str(Path("devtools") / "process.py")]
