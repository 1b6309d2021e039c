"""The health state machine of one instance (pure; the catalog stores its result).

Worse news applies at once: a primary that stops answering must start a failover now.
Better news waits until it has held for ``hold_s`` (Consul's success_before_passing,
in time rather than in checks): a backend that flaps between critical and passing would
otherwise fire the same rules again and again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SEVERITY = {"passing": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class HealthState:
    state: str  # unknown | passing | warning | critical
    pending: str | None = None  # a better state, waiting to have held
    pending_since: datetime | None = None


def transition(current: HealthState, reported: str, now: datetime, hold_s: float) -> HealthState:
    """The state after ``reported`` arrives (or, with ``reported == current.pending``,
    after time passes)."""
    if reported not in SEVERITY:
        raise ValueError(f"unknown health {reported!r}; expected one of {', '.join(SEVERITY)}")
    if current.state not in SEVERITY or SEVERITY[reported] >= SEVERITY[current.state]:
        return HealthState(reported)
    since = current.pending_since if current.pending == reported else now
    if current.pending == reported and since is not None and (now - since).total_seconds() >= hold_s:
        return HealthState(reported)
    if hold_s <= 0:
        return HealthState(reported)
    return HealthState(current.state, reported, since)
