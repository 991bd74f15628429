"""The lock files in requirements/ match pyproject.toml: every declared requirement is pinned
there at a version its range admits, with hashes, and the serving lock is the same versions
without torch. A pyproject edit without `make lock` fails here, not on a user's machine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\$", re.M)


def pins(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    found = {canonicalize_name(n): v for n, v in PIN.findall(text)}
    entries = [line for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("#")]
    assert len(entries) == len(found), f"{name}: every entry is an exact pin followed by its hashes"
    assert text.count("--hash=sha256:") >= len(found)
    return found


def declared(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(PROJECT["name"])]


@pytest.mark.parametrize("lock, extras", [("all.txt", tuple(PROJECT["optional-dependencies"])),
                                          ("serve.txt", ("serve",))])
def test_every_declared_requirement_is_pinned_within_its_range(lock, extras):
    locked = pins(lock)
    for req in declared(*extras):
        version = locked.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is in pyproject.toml but not in requirements/{lock}: run `make lock`"
        assert req.specifier.contains(version, prereleases=True), f"{req}: requirements/{lock} pins {version}"


def test_the_serving_lock_is_the_full_lock_without_torch():
    full, serve = pins("all.txt"), pins("serve.txt")
    assert "torch" not in serve and full["torch"].endswith("+cpu")   # the CPU build, never CUDA
    assert {n: full.get(n) for n in serve} == serve
