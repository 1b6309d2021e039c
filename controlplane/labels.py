"""Label values with a cap, for Prometheus figures labelled by something applications name
(a room kind, a bucket): a label value per name would grow the series without bound."""

from __future__ import annotations

import threading


class CappedLabels:
    """The first ``cap`` values as they are, every later one as ``other``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self.cap:
                return "other"
            self._seen.add(value)
        return value
