"""A process's CPU time and memory, and the CPU's int8 features: the one place tests, benchmarks
and experiments read them."""

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


def int8_cpu_flags() -> list[str]:
    """The CPU flags that decide onnxruntime's int8 kernels (VNNI or not)."""
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in flags if "vnni" in f or f in ("avx2", "avx512f", "amx_int8"))
