"""A server for tests and benchmarks: start it on a 127.0.0.1 port, wait until it is ready, stop it.

`started` is the one way: `ser serve`, uvicorn with workers, or any other server that answers
`/readyz` (the naive baseline of benchmarks/naive_server.py). `running_server` is `ser serve`
with given bundles and settings on a free port, as the tests use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from service.bundle import Bundle
from service.shipped import NO_TEACHER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ser_serve(port: int, workers: int | None = None, python: str = sys.executable) -> list[str]:
    """The command for the service on `port`: `ser serve`, with `--workers` when given (left out,
    the service's default, which is also how checkouts from before the option start)."""
    return [python, "-m", "service.cli", "serve", "--port", str(port), *(["--workers", str(workers)] if workers else [])]


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
def started(cmd: list[str], port: int, *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout_s: float = 60, capture: bool = False, drain_s: float = 0) -> Iterator[subprocess.Popen]:
    """Run `cmd` (a server on 127.0.0.1:`port`) and yield its process once /readyz answers.

    Its settings are `env` alone: SER_* variables of this process are not passed on. With
    `capture`, its stdout and stderr are readable from the process (a chatty server left
    unread would block on a full pipe: benchmarks leave it off). Afterwards it gets SIGTERM
    and `drain_s` to finish (uvicorn's workers stop with their parent only then), then SIGKILL.
    """
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SER_")}, **(env or {})}
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout_s)
        yield proc
    finally:
        stop(proc, drain_s)


def stop(proc: subprocess.Popen, drain_s: float = 0) -> None:
    if proc.poll() is not None:
        return
    if drain_s > 0:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(drain_s)
            return
    proc.kill()
    proc.wait(10)


@contextlib.contextmanager
def running_server(student: Bundle | None, teacher: Bundle | None = None, timeout_s: float = 60,
                   settings: dict[str, str] | None = None, *,
                   ser: tuple[str, ...] = (sys.executable, "-m", "service.cli"), cwd: Path | None = None):
    """`ser serve` (one process) on a free port with these bundles (student-only without `teacher`)
    and more SER_ `settings`; yields (base url, process), its output readable. With `student` None the
    service finds its bundles itself (its default models)."""
    port = free_port()
    env = {"SER_WORKERS": "1"}   # one process unless `settings` say otherwise: limits are per process
    if student is not None:
        env.update(SER_STUDENT_BUNDLE=str(student.path), SER_TEACHER_BUNDLE=str(teacher.path) if teacher else NO_TEACHER)
    env.update(settings or {})
    with started([*ser, "serve", "--port", str(port)], port, env=env, cwd=cwd, timeout_s=timeout_s,
                 capture=True) as proc:
        yield f"http://127.0.0.1:{port}", proc
