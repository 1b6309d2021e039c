"""What collectors share: the shape the runtime expects of one, turning counters into
per-second rates between two probes, and spacing out the sub-probes too heavy to run on
every probe."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from agents.collectors import Observation

if TYPE_CHECKING:
    from agents.config import TargetConfig


class Collector(Protocol):
    """What TargetLoop calls on a collector. Matched by shape, not inherited: a collector
    is a plain class, and tests/unit/agents/test_registries.py holds each registered one
    to this."""

    def collect(self) -> Observation:
        """Probe the backend once; raise when it does not answer."""
        ...

    def close(self) -> None:
        """Release the backend's client (the loop ignores what this raises)."""
        ...


class CollectorClass(Protocol):
    """A registered collector: built from its target's config, once per TargetLoop."""

    def __call__(self, target: TargetConfig) -> Collector: ...


class Rates:
    """Remembers counters between probes; rate() answers None on the first probe and
    after a counter reset (a restarted backend)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def rate(self, key: str, counter: float | None) -> float | None:
        if counter is None:
            return None
        now = time.monotonic()
        previous = self._last.get(key)
        self._last[key] = (now, counter)
        if previous is None or counter < previous[1] or now <= previous[0]:
            return None
        return (counter - previous[1]) / (now - previous[0])


class Every:
    """due() is True on the first call and then once per ``interval_s``: a collector runs its
    expensive parts (a canary write, a broadcast to every worker, a full listing) at this
    pace while its cheap liveness check runs on every probe."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True
