"""A process's CPU time and memory: the one place tests and benchmarks read them."""

from __future__ import annotations

import resource
from pathlib import Path

import psutil

MB = 1024 * 1024


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system, every thread) a process has used: `pid`'s, or this one's;
    for another process, with its live children's (the workers of `ser serve --workers N`)."""
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)] if pid is not None else [proc]
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def finished_children_cpu_s() -> float:
    """CPU seconds of this process's children that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int) -> float:
    """Resident memory now."""
    return psutil.Process(pid).memory_info().rss / MB


# psutil has no peak resident memory on Linux: VmHWM and clear_refs are read and written here.
def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) since the process started or since `reset_peak`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Make the peak start again from the current resident memory (Linux clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
