"""Agent loops. Each has run_once() so a test runs exactly one iteration (STYLE.md)."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time

import httpx

from agents.client import ControlPlaneClient

log = logging.getLogger("coreplane.agent")


class HeartbeatLoop:
    """Tells the control plane this agent is alive, every ``interval_s`` seconds."""

    def __init__(self, client: ControlPlaneClient, *, agent: str, interval_s: float) -> None:
        self.client = client
        self.agent = agent
        self.interval_s = interval_s
        self.hostname = socket.gethostname()
        self.started = time.monotonic()
        self.failures = 0
        self._stop = threading.Event()

    def run_once(self) -> bool:
        """Send one heartbeat; returns whether the control plane accepted it."""
        try:
            self.client.heartbeat(
                agent=self.agent, hostname=self.hostname, uptime_s=time.monotonic() - self.started
            )
        except httpx.HTTPError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 30 == 0:
                log.warning("heartbeat failed (%d in a row): %s", self.failures, exc)
            return False
        if self.failures:
            log.info("control plane reachable again after %d failed heartbeat(s)", self.failures)
        self.failures = 0
        return True

    def delay(self) -> float:
        """Interval when healthy; capped exponential backoff while the control plane fails.
        Jitter of ±10 % keeps a fleet of agents from beating in step."""
        base = self.interval_s
        if self.failures:
            base = min(self.interval_s * 2 ** min(self.failures, 6), 300.0)
        return base * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not cryptography

    def start(self, loops: int | None = None) -> None:
        """Run until stop() (or for ``loops`` iterations)."""
        done = 0
        while not self._stop.is_set() and (loops is None or done < loops):
            self.run_once()
            done += 1
            if loops is None or done < loops:
                self._stop.wait(self.delay())

    def stop(self) -> None:
        self._stop.set()
