"""Every shipped config resolves: `ser pipeline --dry-run` types its nested parts, finds its
corpora and prints the plan without decoding audio; a wrong key is refused by name at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from devtools.data import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"the configs' corpora are in {SHARED_DATA}, absent here")
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_dry_runs(config, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)   # the configs name corpora relative to the checkout
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(config), "--out", str(out), "--dry-run", "--final"]) == 0
    printed = capsys.readouterr().out
    given = json.loads(config.read_text())
    assert f'"teacher_kind": "{given.get("teacher_kind", "frozen")}"' in printed
    assert all(f"  {c['name']}: " in printed for c in given["corpora"]) and "final:" in printed
    assert not out.exists()   # nothing written, nothing trained


@pytest.mark.parametrize("values, named", [({"teacher": {"balanced": True}}, "unknown HeadConfig keys ['balanced']"),
                                           ({"student": {"epochz": 3}}, "unknown StudentConfig keys ['epochz']"),
                                           ({"corpora": [{"name": "x", "rot": "y"}]}, "unknown CorpusSource keys")])
def test_a_wrong_nested_key_is_refused_by_name_before_any_work(values, named, tmp_path, capsys):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(values))
    assert main(["pipeline", "--config", str(config), "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
