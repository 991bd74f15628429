"""`ser serve` in a subprocess: start it on a free port, wait until it is ready, read its memory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.bundle import Bundle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Return once `base`/readyz answers 200; RuntimeError when the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"server exited early with status {proc.returncode}:\n{out}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server at {base} did not become ready in {timeout_s} s")
        time.sleep(0.2)


@contextlib.contextmanager
def running_server(student: Bundle | None, teacher: Bundle | None = None, timeout_s: float = 60,
                   settings: dict[str, str] | None = None, *,
                   ser: tuple[str, ...] = (sys.executable, "-m", "service.cli"), cwd: Path | None = None):
    """`ser serve` in a subprocess on a free 127.0.0.1 port, with more SER_ `settings` if given;
    yields (base url, process) once /readyz answers, and kills the process afterwards. With
    `student` None the service finds its bundles itself (models/ in `cwd`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SER_")}
    if student is not None:
        env.update(SER_STUDENT_BUNDLE=str(student.path), SER_TEACHER_BUNDLE=str(teacher.path) if teacher else "/nonexistent")
    env.update(settings or {})
    proc = subprocess.Popen([*ser, "serve", "--port", str(port)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, timeout_s)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident memory) of a process, in kB."""
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f) if k in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
