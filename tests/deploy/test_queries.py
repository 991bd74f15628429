"""Every PromQL query of the Grafana dashboard and the alert rules, run by a real Prometheus
(the repo's config and rules) against a real `ser serve` with traffic: each parses, each dashboard
query returns data, each rule evaluates. A renamed metric fails the same check."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import yaml

from scripts.check_queries import DASHBOARD, RULES, check_all, check_until_clean
from devtools.audio import voice, wav_bytes
from devtools.data import RAVDESS_CLIP
from tests.support.prometheus import prometheus_binary, running_prometheus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_prometheus(server, tmp_path: Path):
    """deploy/prometheus/prometheus.yml, pointed at the test server and scraping every second."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus server binary is not installed (scripts/install-test-deps.sh)")
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [server[0].removeprefix("http://")]}]
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with running_prometheus(binary, tmp_path / "prometheus.yml", tmp_path) as (url, proc, log):
        yield url, proc, log


def send_traffic(base: str, stop: threading.Event) -> None:
    """Every model choice, one bad upload and one live stream a round, so every panel has
    something to show."""
    from websockets.sync.client import connect

    data = RAVDESS_CLIP.read_bytes() if RAVDESS_CLIP.is_file() else wav_bytes(2.0)
    pcm = (voice(2.0) * 32767).astype("<i2").tobytes()
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            for model in ("auto", "student", "teacher"):
                client.post("/predict", params={"model": model}, files={"file": ("clip", data)})
            client.post("/predict", content=b"not audio at all", headers={"Content-Type": "audio/wav"})
            with connect(base.replace("http://", "ws://") + "/stream", compression=None, proxy=None) as ws:
                ws.send(pcm)
                ws.send('{"type": "end"}')
                for _ in ws:   # the windows and the summary, until the server closes
                    pass
            stop.wait(0.5)


@pytest.mark.timeout(120)
def test_dashboard_and_alert_queries_run_against_a_real_prometheus(server, repo_prometheus, tmp_path):  # noqa: F811
    prom, proc, log = repo_prometheus
    stop = threading.Event()
    traffic = threading.Thread(target=send_traffic, args=(server[0], stop), daemon=True)
    traffic.start()
    try:
        def running():
            assert proc.poll() is None, f"prometheus exited:\n{log.read_text()}"

        problems, n = check_until_clean(prom, DASHBOARD, RULES, loaded_rules=True, wait_s=60, poll_s=1, alive=running)
        assert not problems, "\n".join(problems)
        assert n >= 30   # 22 panel queries, 2 variables, 10 rules: none was skipped

        # The same check fails when the dashboard names a metric the service does not export.
        renamed = tmp_path / "renamed.json"
        renamed.write_text(DASHBOARD.read_text().replace("ser_predictions_total", "ser_prediction_total"))
        problems, _ = check_all(prom, renamed, RULES, loaded_rules=True)
        assert problems and all("ser_prediction_total" in p for p in problems), problems
        # ... when a rule reads a metric the service does not export ...
        renamed_rules = tmp_path / "renamed.yml"
        renamed_rules.write_text(RULES.read_text().replace("ser_fallbacks_total", "ser_fallback_total"))
        problems, _ = check_all(prom, DASHBOARD, renamed_rules, loaded_rules=False)
        assert problems == ["rule SerFallbackShareOutOfBand: no series named ser_fallback_total"], problems
        # ... and when a rule does not parse (Prometheus itself parses it).
        broken = tmp_path / "broken.yml"
        broken.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
            {"alert": "Broken", "expr": "sum(rate(ser_predictions_total[5m])"}]}]}))
        problems, _ = check_all(prom, DASHBOARD, broken, loaded_rules=False)
        assert len(problems) == 1 and "rule Broken: bad_data" in problems[0], problems
    finally:
        stop.set()
        traffic.join(30)

