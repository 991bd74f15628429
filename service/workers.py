"""`ser serve --workers N`: N processes answering on one listening socket (by default one per
CPU this process may use).

One process serves at most about one core of the Python around the model (its event loop and
the GIL it shares with the inference threads), so on N cores N processes answer more requests
(docs/performance.md: 1.6× on 2 cores). The parent binds the socket and loads the bundles once, then forks the
workers: they share the loaded models' memory until they write it, and a worker that dies is
replaced at once from the same parent. The parent never serves; on SIGTERM or SIGINT it passes
SIGTERM to every worker, each drains its own connections, and it exits when they have.

Metrics are counted in each worker and summed over all of them at every scrape
(service/metrics.py, prometheus_client's multiprocess mode in a temporary folder).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("ser")
# A container's CPU limit (docker --cpus, a pod's limit): cgroup v2, then v1 (quota, period).
CPU_QUOTA_FILES = ((Path("/sys/fs/cgroup/cpu.max"),),
                   (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")))


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, bounded by a cgroup CPU quota rounded up
    (which os.cpu_count() and onnxruntime ignore)."""
    n = len(os.sched_getaffinity(0))
    for files in CPU_QUOTA_FILES:
        try:
            quota, period = " ".join(f.read_text() for f in files).split()
            if quota not in ("max", "-1"):
                return max(1, min(n, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError):
            continue
    return n


def run_workers(n: int, serve_one) -> int:
    """Fork `n` processes running `serve_one()` (which returns when its server has stopped) and
    supervise them until SIGTERM or SIGINT and their drain; returns the exit status."""
    from prometheus_client import multiprocess

    workers: set[int] = set()
    stopping = False

    def fork() -> None:
        pid = os.fork()
        if pid == 0:   # the worker: default signal handling until its server installs its own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            status = 1
            try:
                serve_one()
                status = 0
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(status)   # never back into the parent's code
        workers.add(pid)

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):   # it exited between the wait and this
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(n):
        fork()
    status = 0
    while workers:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        workers.discard(pid)
        multiprocess.mark_process_dead(pid)   # its gauges leave the sums; its counts stay
        if not stopping:
            log.warning("worker %d exited (%s); starting another", pid, _exit_reason(code))
            time.sleep(1)   # a worker that cannot start does not spin the CPU
            if not stopping:
                fork()
        elif os.waitstatus_to_exitcode(code) not in (0, -signal.SIGTERM, -signal.SIGINT):   # uvicorn re-raises the signal it drained on
            status = 1
    return status


def _exit_reason(code: int) -> str:
    n = os.waitstatus_to_exitcode(code)
    return f"signal {signal.Signals(-n).name}" if n < 0 else f"status {n}"

