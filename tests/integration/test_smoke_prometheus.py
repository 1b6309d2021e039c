"""Prometheus' HTTP API and promtool."""

import time

import httpx

from tests.support.services import reach, require


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
