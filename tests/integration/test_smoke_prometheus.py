"""Prometheus' HTTP API and promtool."""

import subprocess
import time

import httpx

from tests.conftest import ROOT, reach, require


def test_prometheus_scrapes_its_targets(services):
    require(services.prometheus.url, "prometheus")
    api = f"{services.prometheus.url}/api/v1"
    deadline = time.monotonic() + 30
    while True:
        body = reach(
            "prometheus", services.prometheus.url, httpx.get, f"{api}/query", params={"query": "up"}
        ).json()
        jobs = {r["metric"]["job"]: r["value"][1] for r in body["data"]["result"]}
        if (
            jobs.get("haproxy") == "1" and jobs.get("prometheus") == "1"
        ) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert jobs.get("prometheus") == "1"
    assert jobs.get("haproxy") == "1", f"HAProxy is not scraped: {jobs}"


def test_promtool_checks_a_rule_file(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n- name: smoke\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 1m\n"
    )
    result = subprocess.run(
        ["promtool", "check", "rules", rules], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "SUCCESS: 1 rules found" in result.stdout
