"""`ser score --engine ray` on a local Ray and on a running cluster: the local engine's rows, and --resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from devtools.audio import voice
from devtools.server import free_port

pytest.importorskip("ray", reason="the [scale] extras are not installed")
pytestmark = pytest.mark.slow   # each run starts a local Ray: ~15 s on 2 cores


def ser_score(*args, env: dict | None = None) -> None:
    env = env or {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
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


def test_ray_address_joins_a_running_cluster(tmp_path, student_bundle):
    """A cluster started apart (`ray start --head`, here on the loopback interface only)."""
    for i in range(6):
        sf.write(tmp_path / f"clip{i}.wav", voice(1.5, seed=i), 16_000)
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}   # single-node, 127.0.0.1
    # Its own temporary folder (short: Ray's socket paths must fit in 107 bytes), so that the address
    # it leaves behind is not one that a later ray.init() on this machine would try to join.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={temp}"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ser_score(tmp_path, "--out", tmp_path / "local.parquet", "--student", student_bundle.path)
        ser_score(tmp_path, "--out", tmp_path / "ray.parquet", "--student", student_bundle.path,
                  "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", env=env)
    finally:
        os.killpg(head.pid, signal.SIGTERM)   # `ray start --block` stops the processes it started
        head.wait(60)
        shutil.rmtree(temp, ignore_errors=True)
    local = pq.read_table(tmp_path / "local.parquet").sort_by("path")
    assert pq.read_table(tmp_path / "ray.parquet").sort_by("path").to_pylist() == local.to_pylist()
    assert local.num_rows == 6
