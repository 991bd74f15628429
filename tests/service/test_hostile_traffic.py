"""Traffic built to hurt the service without an API key: label floods in /metrics, a slow
scrape, made-up methods and paths."""

from __future__ import annotations

import asyncio
import random
import string
import time

import httpx
import pytest
from prometheus_client.registry import Collector

from service.app import create_app
from service.settings import Settings
from tests.service.test_api import client_for


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
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
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
