"""Login rate limiting, in two layers, so that guessing is slow but nobody can lock a
real user out from somewhere else:

- per (user name, client address) pair: ``free_failures`` failures, then each further
  attempt waits ``base_wait_s``, doubling with every failure up to ``max_wait_s``; the
  pair's record is forgotten after ``forget_s`` without a failure, or on a success.
  A flood of wrong passwords for a user from one address never slows the same user
  from another address.
- per client address: at most ``address_failures`` failures within ``window_s`` over all
  user names (one address trying many names).

Checking and recording are one step under a lock: an attempt is counted as a failure
when it is let through, before its password is checked (a success takes it back), so
parallel attempts cannot all pass the check before any of them is recorded.

The record lives in the server process: with several processes, each keeps its own
(an attacker gets the allowance once per process).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

_SWEEP_PAST = 10_000  # records kept before stale ones are swept


@dataclass
class _Pair:
    failures: int
    last: float


class LoginLimiter:
    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_wait_s: float = 30.0,
        max_wait_s: float = 900.0,
        forget_s: float = 3600.0,
        address_failures: int = 20,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures, self.base_wait_s, self.max_wait_s = free_failures, base_wait_s, max_wait_s
        self.forget_s, self.address_failures, self.window_s = forget_s, address_failures, window_s
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, user: str, address: str) -> float:
        """0 when a login for ``user`` from ``address`` may be checked now (it is counted
        as a failure until ``succeeded``), else the seconds to wait."""
        now = self._clock()
        with self._lock:
            if len(self._pairs) + len(self._addresses) > _SWEEP_PAST:
                self._sweep(now)
            pair = self._pair(user, address, now)
            recent = self._recent(address, now)
            wait = max(self._pair_wait(pair, now), self._address_wait(recent, now))
            if wait > 0:
                return wait
            pair.failures, pair.last = pair.failures + 1, now
            recent.append(now)
            return 0.0

    def succeeded(self, user: str, address: str) -> None:
        """Take back the attempt counted by ``attempt`` and clear the pair's record."""
        with self._lock:
            self._pairs.pop((user, address), None)
            recent = self._addresses.get(address)
            if recent:
                recent.pop()

    def _sweep(self, now: float) -> None:
        """Forget what no longer counts, so names an attacker invents cannot fill memory."""
        for key in [k for k, p in self._pairs.items() if now - p.last >= self.forget_s]:
            del self._pairs[key]
        for address in [a for a, r in self._addresses.items() if not r or r[-1] <= now - self.window_s]:
            del self._addresses[address]

    def _pair(self, user: str, address: str, now: float) -> _Pair:
        pair = self._pairs.get((user, address))
        if pair is None or now - pair.last >= self.forget_s:
            pair = self._pairs[(user, address)] = _Pair(0, now)
        return pair

    def _pair_wait(self, pair: _Pair, now: float) -> float:
        beyond = pair.failures - self.free_failures
        if beyond < 0:
            return 0.0
        backoff = min(self.base_wait_s * 2 ** min(beyond, 32), self.max_wait_s)
        return max(0.0, pair.last + backoff - now)

    def _recent(self, address: str, now: float) -> deque[float]:
        recent = self._addresses.setdefault(address, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        return recent

    def _address_wait(self, recent: deque[float], now: float) -> float:
        if len(recent) < self.address_failures:
            return 0.0
        return max(0.0, recent[0] + self.window_s - now)
