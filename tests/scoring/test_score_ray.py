"""`ser score --engine ray` on a local Ray: the same rows as the local engine, and --resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.helpers import voice

pytest.importorskip("ray", reason="the [scale] extras are not installed")
pytestmark = pytest.mark.slow   # each run starts a local Ray: ~15 s on 2 cores


def ser_score(*args) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([sys.executable, "-m", "service.cli", "score", *map(str, args), "--quiet"],
                   check=True, timeout=300, env=env)


def test_ray_gives_the_rows_of_the_local_engine_and_resumes(tmp_path, student_bundle):
    audio = tmp_path / "audio"
    audio.mkdir()
    names = []
    for i in range(24):
        names.append(f"clip{i:02d}.wav")
        sf.write(audio / names[-1], voice(1.0 + 0.25 * (i % 8), seed=i), 16_000)
    (audio / "empty.wav").write_bytes(b"")
    (audio / "text.flac").write_text("not audio")
    names += ["empty.wav", "text.flac", "missing.wav"]
    manifest = tmp_path / "all.csv"
    manifest.write_text("path,speaker\n" + "".join(f"audio/{n},s{i % 3}\n" for i, n in enumerate(names)))
    half = tmp_path / "half.csv"
    half.write_text("".join(manifest.read_text().splitlines(keepends=True)[:14]))
    common = ["--student", student_bundle.path, "--segments", "--workers", "2"]

    ser_score(manifest, "--out", tmp_path / "local.parquet", *common)
    ser_score(half, "--out", tmp_path / "ray.parquet", "--engine", "ray", *common)
    assert pq.read_table(tmp_path / "ray.parquet").num_rows == 13
    ser_score(manifest, "--out", tmp_path / "ray.parquet", "--engine", "ray", "--resume", *common)

    local = pq.read_table(tmp_path / "local.parquet").sort_by("path")
    ray = pq.read_table(tmp_path / "ray.parquet").sort_by("path")
    assert ray.schema == local.schema
    assert ray.to_pylist() == local.to_pylist()   # every input once, the same values
    assert local.num_rows == len(names)
    codes = {Path(r["path"]).name: r["error_code"] for r in local.to_pylist() if r["error_code"]}
    assert codes == {"empty.wav": "empty_audio", "text.flac": "unsupported_audio", "missing.wav": "unreadable_file"}
