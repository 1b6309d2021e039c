"""What collectors share: turning counters into per-second rates between two probes."""

from __future__ import annotations

import time


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
