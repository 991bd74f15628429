"""A third-party tester holds the real server to its OpenAPI document: schemathesis, all checks
on, against `ser serve` with the shipped models, with an API key and without, a few hundred cases each."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service.bundle import load_bundle
from devtools.server import running_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "schemathesis-key-0123456789"
CASES_PER_OPERATION = 50   # 13 operations: ~1000 cases in all
MAX_RESPONSE_S = 10        # generous: the CI machine is shared and the teacher runs on the CPU


def schemathesis_command(base: str, key: str | None) -> list[str]:
    return [str(Path(sys.executable).parent / "schemathesis"), "run", f"{base}/openapi.json",
            "--checks", "all", "--max-response-time", str(MAX_RESPONSE_S),
            "--max-examples", str(CASES_PER_OPERATION), "--seed", "1", "--workers", "2",
            *(["--header", f"X-API-Key: {key}"] if key else []), "--request-timeout", "30"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "keyless"])
def test_schemathesis_finds_the_server_true_to_its_contract(tmp_path, key):
    bundles = [load_bundle(ROOT / "models" / role) for role in ("student", "teacher")]
    with running_server(*bundles, settings={"SER_API_KEY": key or ""}) as (base, proc):
        # Drain the access log: a full pipe would block the server mid-run.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.schemathesis_hooks", "PYTHONPATH": str(ROOT),
               "NO_COLOR": "1"}
        t0 = time.monotonic()
        # cwd: schemathesis keeps a .schemathesis/ cache in its working folder
        run = subprocess.run(schemathesis_command(base, key), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        seconds = time.monotonic() - t0
    out = run.stdout[-20_000:] + run.stderr[-5_000:]
    assert run.returncode == 0, out
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", out).groups())
    print(f"schemathesis: {generated} cases, {passed} passed, {seconds:.1f} s")
    assert generated == passed >= 200, out
