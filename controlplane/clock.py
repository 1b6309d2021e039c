"""Time, in one place: "now" in the store's form (naive UTC), and a clock that code whose
behaviour depends on time takes as an argument, so its tests advance time instead of sleeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Clock(Protocol):
    def time(self) -> float:
        """Wall time, seconds since the epoch: for instants other processes read too."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for durations within this process."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told to (``advance``); both readings move together."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
