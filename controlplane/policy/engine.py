"""The policy engine: each round, every enabled rule in order looks at what happened
(new events, a metric window, silence), and a rule whose trigger holds creates its
action unless a dry run, its cooldown or its concurrency cap holds it back. Each firing
and each suppression is recorded with its reason (``rule_evaluations``).

Event-triggered actions carry the idempotency key ``rule:<name>:event:<id>``, so an
event seen twice (a second round, a new leader re-reading the last minute) never
starts two actions.

Triggers are evaluated "as of" the round's ``now`` (nothing stamped later is looked at),
so the dry-run preview (policy/preview.py) replays the past through this same code."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.actions import lifecycle, plans
from controlplane.errors import NotFound
from controlplane.policy import rules as rules_mod
from controlplane.policy.rules import AbsenceTrigger, MetricTrigger, Rule, RuleError
from controlplane.store import counters
from controlplane.store.models import Action, InfrastructureEvent, InfrastructureMetric, RuleEvaluation
from controlplane.store.settings_store import get_setting

log = logging.getLogger("coreplane.policy")

RULES_SETTING = "policy.rules"
LOOKBACK = timedelta(seconds=60)  # how far back event rules look, every round (plus the longest for_s)
MAX_EVENTS = 5000
OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass
class Firing:
    context: dict[str, Any]
    why: str
    key: str | None = None  # idempotency key
    links: dict[str, Any] = field(default_factory=dict)


def stored_rules(session: Session) -> tuple[int, str]:
    """(version, YAML text): the stored document, or the shipped playbooks as version 0."""
    try:
        row = get_setting(session, setting_type=RULES_SETTING)
    except NotFound:
        return 0, rules_mod.load_default_rules()[0]
    return row.version, (row.value or {}).get("yaml", "")


def _event_context(e: InfrastructureEvent) -> dict[str, Any]:
    return {
        "id": str(e.id),
        "event_type": e.event_type,
        "service_name": e.service_name,
        "status": e.status,
        "timestamp": e.timestamp.isoformat() + "Z",
        "details": e.details or {},
    }


class PolicyEngine:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget in-memory state (on taking the lead)."""
        self.seen: dict[tuple[str, str], datetime] = {}  # (rule, event id) -> when seen
        self.holding: dict[str, datetime] = {}  # rule -> since when its condition holds
        self.last_note: dict[str, tuple[str, datetime]] = {}
        self._rules: tuple[tuple[int, str], list[Rule] | RuleError] | None = None

    def rules(self, session: Session) -> list[Rule]:
        """The rules in force, parsed again only when the stored document changes (a document
        that does not validate is not parsed again every round either: its RuleError is kept)."""
        version, text = stored_rules(session)
        if self._rules is None or self._rules[0] != (version, text):
            try:
                parsed: list[Rule] | RuleError = rules_mod.parse_rules(text)
            except RuleError as exc:
                parsed = exc
            self._rules = ((version, text), parsed)
        if isinstance(self._rules[1], RuleError):
            raise self._rules[1]
        return self._rules[1]

    def run_once(self, session: Session, *, now: datetime) -> list[RuleEvaluation]:
        """One round of every rule; the caller commits."""
        try:
            rule_list = self.rules(session)
        except RuleError as exc:  # stored under an older schema of rules: say so, act on none
            log.error("policy rules do not validate: %s", exc)
            rule_list = []
        events = self._new_events(session, rule_list, now)
        recorded = []
        for rule in rule_list:
            if not rule.enabled:
                continue
            try:
                with session.begin_nested():
                    for firing in self.triggered(session, rule, events, now):
                        record = self._consider(session, rule, firing, now)
                        if record is not None:
                            recorded.append(record)
            except Exception as exc:
                log.exception("rule %s failed", rule.name)
                recorded.append(self._record(session, rule, "error", f"{type(exc).__name__}: {exc}", now))
        return recorded

    # --- triggers ---------------------------------------------------------------------

    def _new_events(
        self, session: Session, rule_list: list[Rule], now: datetime
    ) -> list[InfrastructureEvent]:
        """Events of the types event rules watch, from the last LOOKBACK plus the longest
        ``for_s`` (a held event must still be read once it has been held long enough): a late
        event (an agent's clock, a slow batch) is still seen; ``seen`` and the idempotency
        keys make reading an event again harmless. The newest MAX_EVENTS are kept when more
        arrived: a burst may hide the oldest held events, never the new ones."""
        self.seen = {k: t for k, t in self.seen.items() if t > now - timedelta(days=1, seconds=120)}
        watching = [r.trigger.event for r in rule_list if r.enabled and r.trigger.event]
        if not watching:
            return []
        lookback = LOOKBACK + timedelta(seconds=max(t.for_s or 0 for t in watching))
        rows = list(
            session.scalars(
                select(InfrastructureEvent)
                .where(
                    InfrastructureEvent.event_type.in_({t.type for t in watching}),
                    InfrastructureEvent.timestamp > now - lookback,
                    InfrastructureEvent.timestamp <= now,
                )
                .order_by(InfrastructureEvent.timestamp.desc())
                .limit(MAX_EVENTS)
            )
        )
        if len(rows) == MAX_EVENTS:
            log.warning("over %d events in the rules' window: the oldest are not looked at", MAX_EVENTS)
        return rows[::-1]

    def triggered(
        self, session: Session, rule: Rule, events: list[InfrastructureEvent], now: datetime
    ) -> list[Firing]:
        """What makes ``rule`` fire at ``now``, given the events it may look at."""
        trigger = rule.trigger
        if trigger.event is not None:
            return self._event_firings(session, rule, events, now)
        if trigger.metric is not None:
            return self._metric_firing(session, rule, now)
        return self._absence_firing(session, rule, now)

    def _event_firings(
        self, session: Session, rule: Rule, events: list[InfrastructureEvent], now: datetime
    ) -> list[Firing]:
        t = rule.trigger.event
        assert t is not None  # the caller dispatched on the trigger's kind
        firings = []
        for e in events:
            if (rule.name, str(e.id)) in self.seen:
                continue
            details = e.details or {}
            if (
                e.event_type != t.type
                or (t.service not in (None, "*") and e.service_name != t.service)
                or (t.status is not None and e.status != t.status)
                or any(details.get(k) != v for k, v in (t.match or {}).items())
            ):
                continue
            if t.for_s and (now - e.timestamp).total_seconds() < t.for_s:
                continue  # not held long enough yet: looked at again next round
            if t.for_s and self._superseded(session, e, now):
                self.seen[(rule.name, str(e.id))] = now
                continue
            self.seen[(rule.name, str(e.id))] = now
            why = f"event {e.event_type} {e.status or ''} on {e.service_name}".replace("  ", " ")
            if t.for_s:
                why += f", held {t.for_s:g} s"
            firings.append(
                Firing(
                    {"event": _event_context(e)},
                    why,
                    f"rule:{rule.name}:event:{e.id}",
                    {"events": [str(e.id)]},
                )
            )
        return firings

    def _superseded(self, session: Session, e: InfrastructureEvent, now: datetime) -> bool:
        """A later event (by ``now``) of the same kind about the same instance with another status."""
        query = select(InfrastructureEvent.status).where(
            InfrastructureEvent.event_type == e.event_type,
            InfrastructureEvent.service_name == e.service_name,
            InfrastructureEvent.timestamp > e.timestamp,
            InfrastructureEvent.timestamp <= now,
        )
        instance = (e.details or {}).get("instance")
        if instance is not None:
            query = query.where(InfrastructureEvent.details["instance"].as_string() == instance)
        return any(status != e.status for status in session.scalars(query.limit(100)))

    def _metric_firing(self, session: Session, rule: Rule, now: datetime) -> list[Firing]:
        m = rule.trigger.metric
        assert m is not None  # the caller dispatched on the trigger's kind
        rows = metric_window(session, m, since=now - timedelta(seconds=m.window_s), until=now)
        return self.metric_firing(rule, rows, now)

    def metric_firing(self, rule: Rule, rows: list, now: datetime) -> list[Firing]:
        """Whether the metric rule fires at ``now`` given its window's (timestamp, value) rows."""
        m = rule.trigger.metric
        assert m is not None  # the caller dispatched on the trigger's kind
        value = _aggregate(m.agg, rows)
        if value is None or not OPS[m.op](value, m.threshold):
            self.holding.pop(rule.name, None)
            return []
        since = self.holding.setdefault(rule.name, now)
        if (now - since).total_seconds() < m.for_s:
            return []
        why = f"{m.agg}({m.name}[{m.window_s:g}s]) = {value:g} {m.op} {m.threshold:g}"
        if m.for_s:
            why += f" for {m.for_s:g} s"
        return [Firing({"metric": {"name": m.name, "value": value, "agg": m.agg}, "service": m.service}, why)]

    def _absence_firing(self, session: Session, rule: Rule, now: datetime) -> list[Firing]:
        a = rule.trigger.absence
        assert a is not None  # the caller dispatched on the trigger's kind
        heard = signs_of_life(session, a, since=now - timedelta(seconds=a.for_s), until=now, limit=1)
        return absence_firing(rule, heard=bool(heard))

    # --- suppression and action -------------------------------------------------------------

    def _consider(self, session: Session, rule: Rule, firing: Firing, now: datetime) -> RuleEvaluation | None:
        context, target, params = planned(rule, firing, now)
        if firing.key and session.scalar(select(func.count()).where(Action.idempotency_key == firing.key)):
            return None  # this very event already started its action
        held = self._held_back(session, rule, target, params, now)
        if held is not None:
            outcome, kind, why = held
            return self._note(session, rule, outcome, kind, f"{firing.why}: {why}", now, context)
        agent_id = None
        if rule.action.kind not in plans.PLANS:  # an agent's own step: the agent watching the target
            instance = plans.agent_of(session, target, params.get("instance"))
            if instance is None:
                why = f"{firing.why}: no agent watches {target}"
                return self._note(session, rule, "error", "no_agent", why, now, context)
            agent_id = instance.agent_id
        action, _ = lifecycle.create(
            session,
            kind=rule.action.kind,
            target=target,
            params=params,
            requested_by=f"rule:{rule.name}",
            reason=firing.why,
            idempotency_key=firing.key,
            agent_id=agent_id,
            rule=rule.name,
            links=firing.links,
            now=now,
        )
        self.started(rule.name)
        return self._record(session, rule, "fired", firing.why, now, action.id, context)

    def started(self, rule_name: str) -> None:
        """The rule started an action: its condition must hold for ``for_s`` afresh before the next."""
        self.holding.pop(rule_name, None)

    def _held_back(
        self, session: Session, rule: Rule, target: str, params: dict, now: datetime
    ) -> tuple[str, str, str] | None:
        last = session.scalar(
            select(func.max(Action.created_at)).where(Action.rule == rule.name, Action.parent_id.is_(None))
        )
        running = session.execute(
            select(func.count()).where(Action.rule == rule.name, Action.state.not_in(lifecycle.FINISHED))
        ).scalar_one()

        def watched() -> bool:
            return plans.agent_of(session, target, params.get("instance")) is not None

        return held_back(rule, target, params, now=now, last=last, running=running, watched=watched)

    def _note(
        self, session: Session, rule: Rule, outcome: str, kind: str, reason: str, now: datetime, context: dict
    ) -> RuleEvaluation | None:
        """Record a suppression, but not the same kind of one every round while it lasts."""
        previous = self.last_note.get(rule.name)
        if previous and previous[0] == kind and (now - previous[1]).total_seconds() < 60:
            return None
        self.last_note[rule.name] = (kind, now)
        return self._record(session, rule, outcome, reason, now, None, context)

    def _record(
        self,
        session: Session,
        rule: Rule,
        outcome: str,
        reason: str,
        now: datetime,
        action_id: Any = None,
        context: dict | None = None,
    ) -> RuleEvaluation:
        row = RuleEvaluation(
            rule=rule.name,
            at=now,
            outcome=outcome,
            reason=reason[:4000],
            action_id=action_id,
            context=context,
        )
        session.add(row)
        counters.bump(session, counters.EVALUATIONS, rule.name, outcome)
        log.info("rule %s %s: %s", rule.name, outcome, reason)
        return row


def metric_window(
    session: Session, m: MetricTrigger, *, since: datetime, until: datetime, limit: int | None = None
) -> list:
    """(timestamp, value) rows of the metric rule's series from ``since`` to ``until``, oldest first."""
    query = select(InfrastructureMetric.timestamp, InfrastructureMetric.value).where(
        InfrastructureMetric.metric_type == m.name,
        InfrastructureMetric.timestamp >= since,
        InfrastructureMetric.timestamp <= until,
    )
    if m.service not in (None, "*"):
        query = query.where(InfrastructureMetric.service_name == m.service)
    for key, value in (m.tags or {}).items():
        query = query.where(InfrastructureMetric.tags[key].as_string() == value)
    return list(session.execute(query.order_by(InfrastructureMetric.timestamp).limit(limit)).all())


def signs_of_life(
    session: Session, a: AbsenceTrigger, *, since: datetime, until: datetime, limit: int | None = None
) -> list[datetime]:
    """Times of the points that count as a sign of life for the absence rule, oldest first."""
    query = select(InfrastructureMetric.timestamp).where(
        InfrastructureMetric.service_name == a.service,
        InfrastructureMetric.timestamp >= since,
        InfrastructureMetric.timestamp <= until,
    )
    if a.metric:
        query = query.where(InfrastructureMetric.metric_type == a.metric)
    return list(session.scalars(query.order_by(InfrastructureMetric.timestamp).limit(limit)))


def absence_firing(rule: Rule, *, heard: bool) -> list[Firing]:
    """The absence rule fires when nothing was heard within its ``for_s``."""
    if heard:
        return []
    a = rule.trigger.absence
    assert a is not None  # the caller dispatched on the trigger's kind
    what = a.metric or "any metric"
    return [Firing({"service": a.service}, f"no {what} from {a.service} for {a.for_s:g} s")]


def planned(rule: Rule, firing: Firing, now: datetime) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(template context, target, params) of the action a firing asks for; RuleError if a
    template does not render."""
    context = {**firing.context, "rule": rule.name, "now": now.isoformat() + "Z"}
    target = str(rules_mod.render(rule.action.target, context, rule=rule.name, path="action.target"))
    params = rules_mod.render(rule.action.params, context, rule=rule.name, path="action.params")
    return context, target, params


def held_back(
    rule: Rule,
    target: str,
    params: dict,
    *,
    now: datetime,
    last: datetime | None,
    running: int,
    watched: Callable[[], bool],
) -> tuple[str, str, str] | None:
    """(outcome, kind, why) when the rule may not act now: a dry run, its cooldown, its
    concurrency cap, or no agent for an agent's step. ``last`` is when the rule's last action
    started, ``running`` how many of them are unfinished, ``watched()`` whether an agent
    watches the target (asked last: it reads the catalog)."""
    if rule.dry_run:
        return "dry_run", "dry_run", f"would run {rule.action.kind} on {target} with {params}"
    if last is not None and (now - last).total_seconds() < rule.cooldown_s:
        return (
            "suppressed",
            "cooldown",
            f"cooldown, {rule.cooldown_s - (now - last).total_seconds():.0f} s left",
        )
    if running >= rule.max_concurrency:
        why = f"{running} action(s) of this rule unfinished (max_concurrency {rule.max_concurrency})"
        return "suppressed", "concurrency", why
    if rule.action.kind not in plans.PLANS and not watched():
        return "error", "no_agent", f"no agent watches {target}"
    return None


def _aggregate(agg: str, rows: list) -> float | None:
    if not rows:
        return None
    values = [v for _, v in rows]
    if agg == "avg":
        return sum(values) / len(values)
    if agg == "max":
        return max(values)
    if agg == "min":
        return min(values)
    (t0, v0), (t1, v1) = rows[0], rows[-1]
    span = (t1 - t0).total_seconds()
    return (v1 - v0) / span if span > 0 else None
