"""Login rate limiting: after ``max_failures`` failed logins within ``window_s`` from one
client address, or for one user name, further attempts are refused (429) until the
oldest failure leaves the window. Per server process (a login spread over several
processes gets a few more tries); a success clears the user name's record."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, *keys: str) -> float:
        """Seconds until an attempt for ``keys`` is allowed again (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                failures[0] + self.window_s - now
                for key in keys
                if len(failures := self._recent(key, now)) >= self.max_failures
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
