"""A dry run of rules over the recent past: what each rule would have done (fired, or been held
back by its cooldown or concurrency cap) had it been in force, replayed over the stored events
and metrics in time order through the engine's own trigger and hold-back code.

It only reads: no action, no evaluation, no commit. The work is bounded: events and metric
points are capped per rule, metric and absence triggers are looked at every ``step_s``
(the engine looks every round, about a second), so a firing lands on that grid, and the replay
stops after ``max_s`` of work (the sandbox bounds each render; this bounds how many run)."""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.actions import plans
from controlplane.policy.engine import (
    LOOKBACK,
    Firing,
    PolicyEngine,
    absence_firing,
    held_back,
    metric_window,
    planned,
    signs_of_life,
)
from controlplane.policy.rules import Rule, RuleError
from controlplane.store.models import InfrastructureEvent

SPAN_S = 3600.0
STEP_S = 15.0
MAX_EVENTS = 1000  # per event rule
MAX_POINTS = 50_000  # per metric or absence rule
MAX_S = 5.0  # per preview, wall clock
# How long a replayed action counts as unfinished, for max_concurrency: a replay cannot know
# when it would have finished.
ACTION_S = 30.0

Moments = Iterable[tuple[datetime, list[Firing]]]


@dataclass(frozen=True)
class PreviewRow:
    rule: str
    at: datetime
    outcome: str  # fired | suppressed | dry_run | error | limit
    why: str
    held: str | None = None  # cooldown | concurrency | dry_run | no_agent | render
    kind: str | None = None
    target: str | None = None
    params: dict[str, Any] | None = None


def replay(
    session: Session,
    *,
    rules: list[Rule],
    end: datetime,
    span_s: float = SPAN_S,
    step_s: float = STEP_S,
    max_events: int = MAX_EVENTS,
    max_points: int = MAX_POINTS,
    action_s: float = ACTION_S,
    max_s: float = MAX_S,
) -> list[PreviewRow]:
    """What ``rules`` would have done from ``end - span_s`` to ``end``, in time order."""
    start, deadline = end - timedelta(seconds=span_s), time.monotonic() + max_s
    engine = PolicyEngine()  # its in-memory state (events seen, conditions holding) is the replay's
    rows: list[PreviewRow] = []

    def watched(target: str, params: dict) -> bool:  # the catalog as it is now
        return plans.agent_of(session, target, params.get("instance")) is not None

    for rule in rules:
        if rule.enabled:
            limits, moments = _moments(session, engine, rule, start, end, step_s, max_events, max_points)
            rows += limits
            rows += decide(
                rule, moments, engine=engine, action_s=action_s, watched=watched, deadline=deadline
            )
    return sorted(rows, key=lambda row: row.at)  # stable: rules keep their order within a moment


def _moments(
    session: Session,
    engine: PolicyEngine,
    rule: Rule,
    start: datetime,
    end: datetime,
    step_s: float,
    max_events: int,
    max_points: int,
) -> tuple[list[PreviewRow], Moments]:
    """(rows saying where the replay of ``rule`` is cut short, its moments with their firings)."""
    trigger, limits = rule.trigger, []
    if trigger.event is not None:
        events = _events(session, rule, start=start, end=end, limit=max_events)
        if len(events) == max_events:
            why = f"stops here: only the first {max_events} events are replayed"
            limits.append(_limit(rule, events[-1].timestamp, why))
        return limits, event_moments(session, engine, rule, events, start=start, end=end)
    if trigger.metric is not None:
        since = start - timedelta(seconds=trigger.metric.window_s)
        points = metric_window(session, trigger.metric, since=since, until=end, limit=max_points)
        if len(points) == max_points:
            end = points[-1][0]
            limits.append(_limit(rule, end, f"stops here: only the first {max_points} metric points"))
        return limits, metric_moments(engine, rule, points, grid(start, end, step_s))
    # One read of the hour's signs of life instead of one per step (it cannot use an index).
    assert trigger.absence is not None  # a trigger has exactly one kind
    since = start - timedelta(seconds=trigger.absence.for_s)
    stamps = signs_of_life(session, trigger.absence, since=since, until=end, limit=max_points)
    if len(stamps) == max_points:
        end = stamps[-1]
        limits.append(_limit(rule, end, f"stops here: only the first {max_points} metric points"))
    return limits, absence_moments(rule, stamps, grid(start, end, step_s))


def grid(start: datetime, end: datetime, step_s: float) -> list[datetime]:
    """Moments every ``step_s`` after ``start`` up to and including ``end``, anchored at ``end``."""
    step, moments, t = timedelta(seconds=step_s), [], end
    while t > start:
        moments.append(t)
        t -= step
    return moments[::-1]


def event_moments(
    session: Session,
    engine: PolicyEngine,
    rule: Rule,
    events: list[InfrastructureEvent],
    *,
    start: datetime,
    end: datetime,
) -> Moments:
    """The engine's rounds that matter to an event rule: when each event has held for ``for_s``
    (when it arrives, without one); each round sees the events of the last LOOKBACK plus the hold,
    as the engine's does."""
    assert rule.trigger.event is not None  # the caller dispatched on the trigger's kind
    hold = timedelta(seconds=rule.trigger.event.for_s)
    events = [e for e in events if e.timestamp + hold > start]  # the others were decided before it
    stamps = [e.timestamp for e in events]
    moments = {e.timestamp + hold for e in events if start < e.timestamp + hold <= end}
    for at in sorted(moments):
        visible = events[bisect_right(stamps, at - LOOKBACK - hold) : bisect_right(stamps, at)]
        yield at, engine.triggered(session, rule, visible, at)


def metric_moments(engine: PolicyEngine, rule: Rule, points: list[Any], moments: list[datetime]) -> Moments:
    """The metric rule at each moment, over the window of ``points`` (oldest first) it would see."""
    assert rule.trigger.metric is not None  # the caller dispatched on the trigger's kind
    window = timedelta(seconds=rule.trigger.metric.window_s)
    stamps = [p[0] for p in points]
    for at in moments:
        rows = points[bisect_left(stamps, at - window) : bisect_right(stamps, at)]
        yield at, engine.metric_firing(rule, rows, at)


def absence_moments(rule: Rule, stamps: list[datetime], moments: list[datetime]) -> Moments:
    """The absence rule at each moment: whether any of ``stamps`` (oldest first) is within ``for_s``."""
    assert rule.trigger.absence is not None  # the caller dispatched on the trigger's kind
    hold = timedelta(seconds=rule.trigger.absence.for_s)
    for at in moments:
        heard = bisect_right(stamps, at) > bisect_left(stamps, at - hold)
        yield at, absence_firing(rule, heard=heard)


def decide(
    rule: Rule,
    moments: Moments,
    *,
    engine: PolicyEngine,
    action_s: float = ACTION_S,
    watched: Callable[[str, dict], bool] = lambda target, params: True,
    deadline: float = float("inf"),
) -> Iterator[PreviewRow]:
    """Each firing as the engine would take it: its action rendered, then held back or started.
    Started actions are kept in memory (none is created) for the cooldown and concurrency cap.
    Past ``deadline`` (time.monotonic()) a row says where the replay stopped, and it ends."""
    started: list[datetime] = []  # in time order
    busy = timedelta(seconds=action_s)
    for at, firings in moments:
        if time.monotonic() > deadline:
            yield _limit(rule, at, "stops here: the preview ran out of time")
            return
        for firing in firings:
            try:
                _context, target, params = planned(rule, firing, at)
            except RuleError as exc:
                yield PreviewRow(rule.name, at, "error", str(exc), "render", rule.action.kind)
                continue
            running = len(started) - bisect_right(started, at - busy)  # started after at - action_s
            last = started[-1] if started else None
            held = held_back(rule, target, params, now=at, last=last, running=running,
                             watched=partial(watched, target, params))  # fmt: skip
            action: dict[str, Any] = {"kind": rule.action.kind, "target": target, "params": params}
            if held is not None:
                outcome, why_held, why = held
                yield PreviewRow(rule.name, at, outcome, f"{firing.why}: {why}", why_held, **action)
                continue
            started.append(at)
            engine.started(rule.name)
            yield PreviewRow(rule.name, at, "fired", firing.why, **action)


def _events(
    session: Session, rule: Rule, *, start: datetime, end: datetime, limit: int
) -> list[InfrastructureEvent]:
    """The event rule's candidates, oldest first, up to ``end``: from ``for_s`` before ``start``
    (one held into the window fires in it); the engine's code decides which match."""
    t = rule.trigger.event
    assert t is not None  # the caller dispatched on the trigger's kind
    query = select(InfrastructureEvent).where(
        InfrastructureEvent.event_type == t.type,
        InfrastructureEvent.timestamp > start - timedelta(seconds=t.for_s),
        InfrastructureEvent.timestamp <= end,
    )
    if t.service is not None:
        query = query.where(InfrastructureEvent.service_name == t.service)
    return list(session.scalars(query.order_by(InfrastructureEvent.timestamp).limit(limit)))


def _limit(rule: Rule, at: datetime, why: str) -> PreviewRow:
    return PreviewRow(rule.name, at, "limit", why)
