"""Waiting without fixed sleeps: poll a condition until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


def until(what: str, check: Callable[[], T], timeout_s: float = 20.0, every_s: float = 0.05,
          logs: Callable[[], str] = lambda: "",
          ignoring: tuple[type[BaseException], ...] = ()) -> T:  # fmt: skip
    """Poll ``check`` until it returns something truthy and return that; past ``timeout_s``
    raise TimeoutError naming ``what`` was awaited, the last value (or ignored error) seen
    and ``logs()`` (a process's log tail, say). An exception from ``check`` propagates at
    once, unless it is one of ``ignoring`` (a server not up yet): that counts as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = last = check()
        except ignoring as exc:
            found, last = None, exc
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}; last seen: {last!r}\n{logs()}")
        time.sleep(every_s)


def epoch(stamp: str) -> float:
    """An API timestamp (RFC 3339, Z or offset) as Unix time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
