"""Prometheus' HTTP API and promtool."""

import httpx

from tests.support.services import reach, require
from tests.support.timing import until


def test_prometheus_scrapes_its_targets(services):
    require(services.prometheus.url, "prometheus")
    api = f"{services.prometheus.url}/api/v1"
    jobs: dict[str, str] = {}

    def both_up() -> bool:
        body = reach(
            "prometheus", services.prometheus.url, httpx.get, f"{api}/query", params={"query": "up"}
        ).json()
        jobs.clear()
        jobs.update({r["metric"]["job"]: r["value"][1] for r in body["data"]["result"]})
        return jobs.get("haproxy") == "1" and jobs.get("prometheus") == "1"

    until("Prometheus to scrape itself and HAProxy", both_up, 30, 1, logs=lambda: f"up: {jobs}")
    assert jobs.get("prometheus") == "1"
    assert jobs.get("haproxy") == "1", f"HAProxy is not scraped: {jobs}"
