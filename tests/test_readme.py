"""The README stays the front door: short enough to read, every local link it gives resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 16_000   # the two commands, the API in brief, settings, metrics, scores; the rest in docs/


def test_the_readme_stays_short():
    assert len(README.read_bytes()) <= MAX_BYTES, "move detail into docs/ and link it"


def test_every_local_link_of_the_readme_resolves():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local and [t for t in local if not (ROOT / t).exists()] == []
