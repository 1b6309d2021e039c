"""A generic HTTP check: status and latency; any status >= 400 is critical."""

from __future__ import annotations

import time

from agents.collectors import Observation
from agents.config import TargetConfig
from agents.http import HttpClient


class HttpCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.url = target.address
        self.expect = int(target.options.get("expect_status", 200))
        self.http = HttpClient(timeout_s=target.timeout_s)

    def collect(self) -> Observation:
        started = time.perf_counter()
        response = self.http.get(self.url)
        obs = Observation()
        obs.add("coreplane_http_duration_seconds", time.perf_counter() - started)
        obs.add("coreplane_http_status_code", response.status)
        ok = response.status == self.expect
        obs.add("coreplane_http_up", 1 if ok else 0)
        if not ok:
            obs.status = "critical" if response.status >= 400 else "warning"
        obs.message = f"HTTP {response.status}"
        return obs

    def close(self) -> None:
        self.http.close()
