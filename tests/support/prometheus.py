"""A real Prometheus server (the Debian binary) on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from devtools.server import free_port


def prometheus_binary() -> str | None:
    found = shutil.which("prometheus") or "/usr/bin/prometheus"
    return found if os.access(found, os.X_OK) else None


@contextlib.contextmanager
def running_prometheus(binary: str, config: Path, workdir: Path):
    """`prometheus` with `config` on a free 127.0.0.1 port; yields (url, process, log path)."""
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
