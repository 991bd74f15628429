"""`ser serve --workers 2`: two processes on one port, every request counted once in /metrics
whichever worker answers it or the scrape, a killed worker replaced, SIGTERM draining both."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from devtools.audio import wav_bytes
from devtools.server import running_server
from service import workers

CLIP = wav_bytes(1.5)


def predictions(base: str, n: int) -> None:
    """`n` clips POSTed over 8 connections at once, so that both workers take some."""
    def send(k: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(k):
                r = client.post("/predict", params={"model": "student"}, files={"file": ("a.wav", CLIP)})
                assert r.status_code == 200, r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, [n // 8] * 8))


def counted(base: str) -> set[float]:
    """/predict's 200s in /metrics, over 6 scrapes on new connections (each answered by either worker)."""
    pattern = re.compile(r'^ser_request_duration_seconds_count\{method="POST",route="/predict",status="200"\} (\S+)$', re.M)
    return {float(pattern.search(httpx.get(f"{base}/metrics", timeout=10).text).group(1)) for _ in range(6)}


def test_two_workers_count_each_request_once_survive_a_killed_worker_and_drain(student_bundle, teacher_bundle):
    with running_server(student_bundle, teacher_bundle, settings={"SER_WORKERS": "2"}) as (base, proc):
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        predictions(base, 48)
        assert counted(base) == {48.0}
        assert all(w.cpu_times().user > 0 for w in workers)

        workers[0].send_signal(signal.SIGKILL)   # its counts stay; a new worker takes its place
        workers[0].wait(10)
        deadline = time.monotonic() + 30
        while len(psutil.Process(proc.pid).children()) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)
        predictions(base, 16)
        assert counted(base) == {64.0}
        assert 'ser_model_info{' in httpx.get(f"{base}/metrics").text

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        log = proc.stdout.read()
        assert "starting 2 worker processes" in log and "exited (signal SIGKILL); starting another" in log
        assert sum(line.startswith("ready: ") for line in log.splitlines()) == 3   # two, then the replacement
        assert log.splitlines().count("stopped") == 2   # the two live workers drained
        assert not psutil.pid_exists(workers[1].pid)


@pytest.mark.parametrize("files, want", [({"cpu.max": "50000 100000\n"}, 1),          # docker --cpus 0.5
                                         ({"cpu.max": "150000 100000\n"}, 2),         # --cpus 1.5: rounded up
                                         ({"cpu.max": "max 100000\n"}, None),          # no limit: the affinity
                                         ({"quota": "100000\n", "period": "100000\n"}, 1),   # cgroup v1
                                         ({"quota": "-1\n", "period": "100000\n"}, None),
                                         ({}, None)])                                   # no cgroup files
def test_usable_cpus_follow_a_container_cpu_limit(files, want, tmp_path, monkeypatch):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(workers, "CPU_QUOTA_FILES", ((tmp_path / "cpu.max",), (tmp_path / "quota", tmp_path / "period")))
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert workers.usable_cpus() == (want or 4)
