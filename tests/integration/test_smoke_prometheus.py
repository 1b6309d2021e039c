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
        if (jobs.get("haproxy") == "1" and jobs.get("prometheus") == "1") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert jobs.get("prometheus") == "1"
    assert jobs.get("haproxy") == "1", f"HAProxy is not scraped: {jobs}"


def test_promtool_checks_and_tests_the_shipped_rules():
    rule_files = sorted(str(p) for p in (ROOT / "alerts").glob("*.yml") if not p.name.endswith(".test.yml"))
    assert rule_files, "alerts/ holds no rule file"
    check = subprocess.run(["promtool", "check", "rules", *rule_files], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted(str(p) for p in (ROOT / "alerts").glob("*.test.yml"))
    run = subprocess.run(["promtool", "test", "rules", *tests], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
