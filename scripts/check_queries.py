#!/usr/bin/env python3
"""Run every PromQL query of the Grafana dashboard and of the alert rules against a live Prometheus.

    python scripts/check_queries.py --prometheus http://127.0.0.1:9090 --wait 120

Passes when, within --wait seconds (while traffic reaches the scraped service):
  - every dashboard query, with its template variables set to "All", parses and returns at least
    one finite value, and every `label_values(...)` variable finds at least one value;
  - every alert rule's expression parses, and every metric it reads exists;
  - Prometheus has loaded exactly the rules of the file and evaluated each without an error.
So a renamed metric or label makes it fail. Exit status 1, with the failing queries, otherwise.
Needs only the standard library and PyYAML.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "ser.json"
RULES = REPO / "deploy" / "prometheus" / "rules" / "ser-alerts.yml"
# Grafana's built-in interval variables, at the values they take with a 15 s scrape interval.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


@dataclass
class Query:
    where: str   # the panel and refId, the variable, or the alert
    expr: str


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}); an unknown one is an error."""
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]
    return VARIABLE.sub(one, expr)


def walk_panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))   # panels inside collapsed rows


def dashboard_queries(path: Path) -> tuple[list[Query], list[tuple[str, str, str]]]:
    """(panel queries, [(variable, series selector, label)]) with variables set to All."""
    dash = json.loads(path.read_text())
    values = dict(BUILTINS)
    variables = []
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] != "query":   # the datasource variable: used in uids, not in queries
            values[v["name"]] = v.get("query", "")
        else:
            values[v["name"]] = v.get("allValue") or ".*"
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = LABEL_VALUES.match(q.strip())
            if not m:
                raise ValueError(f"variable {v['name']}: only label_values(selector, label) is checked, got {q!r}")
            variables.append((v["name"], substitute(m.group(1), values), m.group(2)))
    queries = [Query(f"panel {p['title']!r} {t.get('refId', '?')}", substitute(t["expr"], values))
               for p in walk_panels(dash["panels"]) for t in p.get("targets", []) if t.get("expr")]
    return queries, variables


def rule_queries(path: Path) -> list[Query]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [Query(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for g in groups for r in g["rules"]]


def api(prom: str, endpoint: str, **params) -> dict:
    url = f"{prom}/api/v1/{endpoint}?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:   # 400 bad_data: the query does not parse
        text = e.read().decode(errors="replace")
        try:
            return json.loads(text)
        except ValueError:   # 503 text while the TSDB opens
            return {"status": "error", "errorType": f"HTTP {e.code}", "error": text.strip()[:200]}
    except (urllib.error.URLError, OSError) as e:   # not listening yet
        return {"status": "error", "errorType": "unreachable", "error": str(e)}


def check_query(prom: str, q: Query, need_data: bool) -> str | None:
    """None when fine, else why not."""
    body = api(prom, "query", query=q.expr)
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}"
    if not need_data:
        return None
    result = body["data"]["result"]
    values = [float(s["value"][1]) for s in result] if body["data"]["resultType"] == "vector" else []
    if not any(math.isfinite(v) for v in values):
        return f"no finite value (result: {json.dumps(result)[:200]})"
    return None


def check_variable(prom: str, selector: str, label: str) -> str | None:
    body = api(prom, f"label/{label}/values", **{"match[]": selector})
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}"
    return None if body["data"] else f"no value of {label} on {selector}"


def check_rule_metrics(prom: str, q: Query) -> list[str]:
    """Every metric a rule reads exists: a rule on a renamed metric would otherwise never fire."""
    names = set(re.findall(r"\b(ser_\w+|up)\b", q.expr))
    missing = [n for n in sorted(names) if not api(prom, "series", **{"match[]": n}).get("data")]
    return [f"{q.where}: no series named {n}" for n in missing]


def check_loaded_rules(prom: str, expected: list[Query]) -> list[str]:
    """Prometheus loaded the file's rules, and each has been evaluated without an error."""
    body = api(prom, "rules")
    loaded = {f"rule {r['name']}": r for g in body.get("data", {}).get("groups", []) for r in g["rules"]}
    problems = [f"{q.where}: not loaded by Prometheus" for q in expected if q.where not in loaded]
    problems += [f"{name}: health {r['health']} {r.get('lastError', '')}".rstrip()
                 for name, r in loaded.items() if r["health"] != "ok"]
    return problems


def check_all(prom: str, dashboard: Path, rules: Path, loaded_rules: bool) -> tuple[list[str], int]:
    panels, variables = dashboard_queries(dashboard)
    alerts = rule_queries(rules)
    problems = [f"{q.where}: {why}\n    {q.expr}" for q in panels if (why := check_query(prom, q, True))]
    problems += [f"variable {name}: {why}" for name, sel, label in variables if (why := check_variable(prom, sel, label))]
    problems += [f"{q.where}: {why}\n    {q.expr}" for q in alerts if (why := check_query(prom, q, False))]
    problems += [p for q in alerts for p in check_rule_metrics(prom, q)]
    if loaded_rules:
        problems += check_loaded_rules(prom, alerts)
    return problems, len(panels) + len(variables) + len(alerts)


def check_until_clean(prom: str, dashboard: Path, rules: Path, loaded_rules: bool, wait_s: float,
                      poll_s: float = 2.0, alive=None) -> tuple[list[str], int]:
    """`check_all`, tried again every `poll_s` until it finds nothing or `wait_s` has passed: a
    fresh Prometheus needs a few scrapes and rule evaluations. `alive()`, when given, runs first
    each time (to stop early when Prometheus itself has died)."""
    deadline = time.monotonic() + wait_s
    while True:
        if alive:
            alive()
        problems, n = check_all(prom, dashboard, rules, loaded_rules)
        if not problems or time.monotonic() > deadline:
            return problems, n
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", type=Path, default=DASHBOARD)
    ap.add_argument("--rules", type=Path, default=RULES)
    ap.add_argument("--no-loaded-rules", action="store_true",
                    help="do not require Prometheus to have loaded the rules file")
    ap.add_argument("--wait", type=float, default=60, help="seconds to retry until everything passes")
    args = ap.parse_args(argv)
    problems, n = check_until_clean(args.prometheus, args.dashboard, args.rules, not args.no_loaded_rules,
                                    args.wait)
    if problems:
        print(f"PromQL check FAILED: {len(problems)} problems with the {n} queries", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"PromQL check OK: {n} queries of {args.dashboard.name} and {args.rules.name} "
          "parse, every dashboard query returns data, every rule's metrics exist and it evaluates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
