"""Traffic built to hurt the service without an API key: label floods in /metrics, a slow
scrape, made-up methods and paths."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import random
import socket
import string
import threading
import time

import httpx
import pytest
from prometheus_client.registry import Collector

from service.app import create_app
from service.settings import Settings
from devtools.audio import wav_bytes
from tests.support.client import client_for
from devtools.http import Request, send
from devtools.process import peak_rss_mb, rss_mb
from devtools.server import running_server


def series(metrics_text: str) -> set[str]:
    """The series (name and labels) in a Prometheus text exposition."""
    return {ln.rsplit(" ", 1)[0] for ln in metrics_text.splitlines() if ln and not ln.startswith("#")}


METHODS = [None, "GET", "POST", "DELETE", "PATCH"]   # None: made up
PATHS = [None, "/predict", "/healthz", "/v1/models"]


def random_request(rng: random.Random, method: str | None, path: str | None) -> tuple[str, str]:
    method = method or "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 40)))
    path = path or "/" + "/".join("".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 30)))
                                  for _ in range(rng.randint(1, 4)))
    return method, path


def test_random_methods_and_paths_add_no_series(student_bundle):
    rng = random.Random(0)
    with client_for(student_bundle) as client:
        for method in METHODS:   # each kind of request once: every series that can exist is there
            for path in PATHS:
                client.request(*random_request(rng, method, path))
        client.get("/metrics")
        before = series(client.get("/metrics").text)
        for _ in range(1000):
            r = client.request(*random_request(rng, rng.choice(METHODS), rng.choice(PATHS)))
            assert r.status_code < 500, r.text
        after = series(client.get("/metrics").text)
    assert after == before, sorted(after - before)[:10]
    routes = {s.split('route="')[1].split('"')[0] for s in after if 'route="' in s}
    assert routes <= {"not_found", "/predict", "/healthz", "/v1/models", "/metrics"}, routes


class SlowCollector(Collector):
    def collect(self):
        time.sleep(0.6)   # a large registry, or a slow custom collector
        return []


def test_metrics_are_rendered_off_the_event_loop(student_bundle):
    app = create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None))
    app.state.runtime.metrics.registry.register(SlowCollector())

    async def race() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            t0 = time.perf_counter()
            scrape = asyncio.create_task(client.get("/metrics"))
            await asyncio.sleep(0.1)   # the scrape is being rendered
            assert (await client.get("/healthz")).status_code == 200
            seconds = time.perf_counter() - t0
            assert (await scrape).status_code == 200
            return seconds

    assert asyncio.run(race()) < 0.4   # the health check did not wait for the 0.6 s scrape


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "X" * 2000])
def test_unusual_methods_are_counted_as_other(student_bundle, method):
    with client_for(student_bundle) as client:
        client.request(method, "/predict")
        text = client.get("/metrics").text
    assert 'method="other"' in text and method not in text


def stalled_upload(base: str, announced: int, sent: int) -> socket.socket | None:
    """A raw upload that announces `announced` bytes, sends `sent` and then stalls; None when
    the server refused it (answered and closed) while it was being sent."""
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/wav\r\n"
                  f"Content-Length: {announced}\r\n\r\n".encode())
        chunk = b"\0" * (1 << 20)
        for i in range(0, sent, len(chunk)):
            s.sendall(chunk[: min(len(chunk), sent - i)])
    except OSError:   # refused: the server closed the connection
        s.close()
        return None
    return s


def test_stalled_uploads_cannot_exhaust_memory_or_starve_normal_clips(student_bundle):
    """60 uploads that announce 9 MB and stall 1 kB short of it: without a budget they raise the
    server's RSS by 500+ MB. With SER_MAX_INFLIGHT_BYTES (64 MB by default), at most 75 % of it
    goes to uploads over 1 MB; the rest are refused with 503 before their body is read, normal
    clips are still answered, and the RSS rise stays under the budget plus 32 MB."""
    budget = 64_000_000   # the default SER_MAX_INFLIGHT_BYTES
    with running_server(student_bundle, settings={"SER_UPLOAD_TIMEOUT_S": "60"}) as (base, proc):
        threading.Thread(target=proc.stdout.read, daemon=True).start()   # drain the access log
        clip = wav_bytes(1.0)
        assert httpx.post(f"{base}/predict", content=clip, headers={"content-type": "audio/wav"}).status_code == 200
        rss0 = rss_mb(proc.pid)
        with cf.ThreadPoolExecutor(16) as pool:
            uploads = list(pool.map(lambda _: stalled_upload(base, 9_000_000, 9_000_000 - 1_000), range(60)))
        try:
            held = [s for s in uploads if s is not None]
            answers = [httpx.post(f"{base}/predict", content=clip, headers={"content-type": "audio/wav"}, timeout=30)
                       for _ in range(10)]
            assert [r.status_code for r in answers] == [200] * 10, answers[0].text
            rise_mb = peak_rss_mb(proc.pid) - rss0
            print(f"{len(held)} stalled uploads held, RSS rise {rise_mb:.0f} MB")
            assert len(held) <= budget * 0.75 // 9_000_000
            assert rise_mb < budget / 1e6 + 32, rise_mb
            refused = httpx.post(f"{base}/predict", content=b"\0" * 5_000_000, headers={"content-type": "audio/wav"})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert "SER_MAX_INFLIGHT_BYTES" in refused.json()["error"]["message"]   # the table's one wording
        finally:
            for s in uploads:
                if s is not None:
                    s.close()


def test_the_upload_budget_must_hold_the_largest_upload():
    with pytest.raises(ValueError, match="SER_MAX_INFLIGHT_BYTES must be at least"):
        Settings(max_upload_bytes=50_000_000)   # 75 % of the default 64 MB budget is 48 MB
    assert Settings(max_upload_bytes=48_000_000).max_inflight_bytes == 64_000_000


def test_the_http_parser_refuses_made_up_methods_and_oversized_heads(student_bundle):
    """httptools (llhttp) knows the methods; uvicorn's h11 fallback would hand any token to the app."""
    with running_server(student_bundle) as (base, proc):
        host, port = base.removeprefix("http://").split(":")

        def status(method: str, path: str, **headers: str) -> int:
            return send(host, int(port), Request(b"", headers, path, method), timeout_s=10)[0]

        before = series(httpx.get(f"{base}/metrics").text)
        rng = random.Random(1)
        for _ in range(50):
            assert status("".join(rng.choices(string.ascii_uppercase, k=2000)), "/predict") == 400
        assert status("GET", "/healthz", **{"X-Pad": "a" * 1_000_000}) == 400
        assert status("GET", "/healthz", **{"X-Pad": "a" * 12_000}) == 200
        after = series(httpx.get(f"{base}/metrics").text)
        proc.kill()
        log = proc.stdout.read()
    assert after - before <= {s for s in after if 'route="/healthz"' in s or 'route="/metrics"' in s}
    ready = next(line for line in log.splitlines() if line.startswith("ready: "))
    assert ready.endswith("(httptools, uvloop)"), ready
