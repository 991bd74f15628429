"""docker-compose.yml, the Prometheus config and rules, and the Grafana provisioning and
dashboard: consistent with each other and with the service (no Docker needed; scripts/docker-ci.sh
runs them for real)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from prometheus_client import generate_latest

from service.metrics import Metrics
from scripts.check_queries import walk_panels
from service.server import DRAIN_S

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DASHBOARD = json.loads((REPO / "deploy/grafana/dashboards/ser.json").read_text())


def seconds(duration: str) -> int:
    (n, unit), = re.findall(r"^(\d+)(s|m)$", duration)
    return int(n) * (60 if unit == "m" else 1)


def panels() -> list[dict]:
    return list(walk_panels(DASHBOARD["panels"]))


def test_api_service_builds_on_a_chosen_base_and_is_limited():
    api = COMPOSE["services"]["api"]
    assert api["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.11-slim}"
    env = api["environment"]
    assert (int(env["SER_WORKERS"]) * int(env["SER_INTRA_OP_THREADS"]) * int(env["SER_MAX_CONCURRENCY"])
            == int(env["SER_WORKERS"]) == float(api["cpus"]))   # a process per CPU
    assert api["mem_limit"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert seconds(api["stop_grace_period"]) >= DRAIN_S + 5
    assert api["restart"] in ("always", "unless-stopped", "on-failure")
    assert "./models:/app/models:ro" in api["volumes"]
    assert api["read_only"] is True and any(t.startswith("/tmp") for t in api["tmpfs"])
    assert api["ports"] == ["127.0.0.1:${SER_PORT:-8000}:8000"]


def test_prometheus_scrapes_the_api_service_and_loads_the_rules():
    prom = COMPOSE["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prom["volumes"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "ser"   # the dashboard and the rules select it
    assert job["static_configs"][0]["targets"] == ["api:8000"]
    for rules in config["rule_files"]:
        assert (REPO / "deploy/prometheus" / rules).is_file()


def test_grafana_provisions_the_datasource_the_dashboard_uses():
    grafana = COMPOSE["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":") for v in grafana["volumes"] if v.startswith("./"))
    (ds,) = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert ds["url"] == "http://prometheus:9090" and ds["type"] == "prometheus"
    (provider,) = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/ser.yml").read_text())["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (var,) = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"]
    assert var["current"]["value"] == ds["uid"] and var["query"] == ds["type"]
    for p in panels():
        for item in (p, *p.get("targets", [])):
            assert item["datasource"] == {"type": "prometheus", "uid": "${%s}" % var["name"]}, p["title"]


def test_dashboard_panels_are_well_formed():
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for p in panels():
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert p["gridPos"]["w"] > 0 and p["gridPos"]["h"] > 0


def test_dashboard_shows_every_metric_the_service_exports():
    exprs = " ".join(t["expr"] for p in panels() for t in p["targets"])
    exported = generate_latest(Metrics().registry).decode()
    names = {n for n in re.findall(r"^# TYPE (\w+) ", exported, re.M) if not n.endswith("_created")}
    assert len(names) >= 8 and all(n.startswith("ser_") for n in names)
    assert {n for n in names if not re.search(rf"\b{n}(_bucket|_count|_sum)?\b", exprs)} == set()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (scripts/install-test-deps.sh)")
def test_promtool_accepts_the_config_and_the_rules_and_their_unit_tests():
    for args in (["check", "config", "deploy/prometheus/prometheus.yml"],
                 ["check", "rules", "deploy/prometheus/rules/ser-alerts.yml"],
                 ["test", "rules", "deploy/prometheus/rules/ser-alerts.test.yml"]):   # the alerts fire as meant
        r = subprocess.run(["promtool", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_compose_defaults_are_safe_on_a_host_with_a_public_address():
    services = COMPOSE["services"]
    for name, svc in services.items():
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"]), name   # reachable from this host only
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"], name
    grafana = services["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", grafana["GF_SECURITY_ADMIN_PASSWORD"])   # required
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS:-false}"
    assert services["api"]["environment"]["SER_API_KEY"] == "${SER_API_KEY:-}"


def size_bytes(text: str) -> int:
    (n, unit), = re.findall(r"^(\d+)([kmg]|[KMG]i)?$", text)
    return int(n) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[unit]


def test_the_api_tmpfs_holds_the_upload_budget():
    api = COMPOSE["services"]["api"]
    (tmp,) = [t for t in api["tmpfs"] if t.startswith("/tmp")]
    size = size_bytes(dict(o.split("=") for o in tmp.split(":", 1)[1].split(","))["size"])
    assert size >= int(api["environment"]["SER_WORKERS"]) * int(api["environment"]["SER_MAX_INFLIGHT_BYTES"])
    assert size_bytes(api["mem_limit"]) >= 8 * size   # tmpfs counts against the memory limit
