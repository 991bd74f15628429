"""A real Prometheus scrapes a real `ser serve`: the metrics are scrapeable and the queries an
operator would write (prediction counts, an inference p99, target health) return values."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

from devtools.audio import wav_bytes
from devtools.data import RAVDESS_CLIP
from tests.support.prometheus import prometheus_binary, running_prometheus

JOB = "ser"
P99 = "histogram_quantile(0.99, sum by (le) (rate(ser_inference_duration_seconds_bucket[1m])))"


@pytest.fixture
def prometheus(server, tmp_path: Path):
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus server binary is not installed (/usr/bin/prometheus; "
                    "apt-get install prometheus, or scripts/install-test-deps.sh)")
    base, _ = server
    target = base.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {JOB}
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
""")
    with running_prometheus(binary, config, tmp_path) as (url, proc, log):
        yield url, proc, log


def query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def finite_values(result: list[dict]) -> list[float]:
    return [v for v in (float(s["value"][1]) for s in result) if math.isfinite(v)]


@pytest.mark.timeout(90)
def test_prometheus_scrapes_the_service_and_answers_latency_queries(server, prometheus):  # noqa: F811
    base, _ = server
    prom, proc, log = prometheus
    if RAVDESS_CLIP.is_file():
        data, name = RAVDESS_CLIP.read_bytes(), RAVDESS_CLIP.name
    else:
        data, name = wav_bytes(2.0), "generated.wav"

    def predict() -> None:
        r = httpx.post(f"{base}/predict", params={"model": "student"}, files={"file": (name, data)}, timeout=30)
        assert r.status_code == 200, r.text

    deadline = time.monotonic() + 30
    # Prometheus up and scraping the target before the traffic, so rate() sees the counters move.
    while True:
        assert proc.poll() is None, f"prometheus exited:\n{log.read_text()}"
        try:   # /-/ready answers 503 until the TSDB is open; the query API too
            if httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200 and query(prom, f'up{{job="{JOB}"}} == 1'):
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"prometheus never saw the target up:\n{log.read_text()}"
        time.sleep(0.25)

    sent = 0
    got: dict[str, list[dict]] = {}
    while True:
        for _ in range(3):
            predict()
            sent += 1
        got = {
            "predictions": query(prom, 'sum by (model) (ser_predictions_total{model="student"})'),
            "p99": query(prom, P99),
            "up": query(prom, f'up{{job="{JOB}"}} == 1'),
        }
        if got["predictions"] and finite_values(got["p99"]) and got["up"]:
            break
        assert proc.poll() is None, f"prometheus exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no values from Prometheus in 30 s after {sent} requests: {got}"
        time.sleep(0.5)

    (predictions,) = got["predictions"]
    assert predictions["metric"]["model"] == "student"
    assert 1 <= float(predictions["value"][1]) <= sent
    (p99,) = finite_values(got["p99"])
    assert 0 < p99 <= 10.0          # seconds: the largest finite bucket
    assert got["up"][0]["metric"]["job"] == JOB
    # the bundle identity is exported too, for dashboards that show which model is serving
    assert query(prom, 'ser_model_info{role="student"}')
