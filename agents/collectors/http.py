"""A generic HTTP check: status and latency; any status >= 400 is critical."""

from __future__ import annotations

import time

import httpx

from agents.collectors import Observation
from agents.config import TargetConfig


class HttpCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.url = target.address
        self.expect = int(target.options.get("expect_status", 200))
        self.http = httpx.Client(timeout=target.timeout_s, follow_redirects=False)

    def collect(self) -> Observation:
        started = time.perf_counter()
        response = self.http.get(self.url)
        obs = Observation()
        obs.add("coreplane_http_duration_seconds", time.perf_counter() - started)
        obs.add("coreplane_http_status_code", response.status_code)
        ok = response.status_code == self.expect
        obs.add("coreplane_http_up", 1 if ok else 0)
        if not ok:
            obs.status = "critical" if response.status_code >= 400 else "warning"
        obs.message = f"HTTP {response.status_code}"
        return obs

    def close(self) -> None:
        self.http.close()
