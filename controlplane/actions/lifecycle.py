"""The action lifecycle (DESIGN.md §3): pending -> dispatched -> running -> succeeded |
failed | cancelled, every move written to the audit trail. Functions take the session
first and never commit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from controlplane import tracing
from controlplane.errors import Conflict
from controlplane.notify import ACTIONS, announce
from controlplane.store import counters
from controlplane.store.models import Action, ActionAudit, Agent, CatalogInstance, CatalogService

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
MOVES = {
    "pending": {"dispatched", "running", "cancelled", "failed"},
    "dispatched": {"running", "succeeded", "failed", "cancelled", "pending"},
    "running": {"succeeded", "failed", "cancelled", "pending"},
}


def create(
    session: Session,
    *,
    kind: str,
    target: str,
    params: dict[str, Any],
    requested_by: str,
    now: datetime,
    reason: str | None = None,
    idempotency_key: str | None = None,
    agent_id: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
    rule: str | None = None,
    links: dict[str, Any] | None = None,
    max_attempts: int = 1,
    timeout_s: float = 60.0,
) -> tuple[Action, bool]:
    """A new pending action, or the existing one with the same idempotency key (created=False).
    Its links keep the trace it belongs to: its parent's, else the creating request's or round's."""
    if idempotency_key:
        existing = session.scalars(select(Action).where(Action.idempotency_key == idempotency_key)).first()
        if existing is not None:
            return existing, False
    parent = session.get(Action, parent_id) if parent_id else None
    inherited = (parent.links if parent is not None else None) or {}
    if inherited.get("traceparent"):
        trace: dict[str, str] = {k: inherited[k] for k in ("trace_id", "traceparent") if k in inherited}
    else:
        trace = tracing.action_trace(kind=kind, target=target)
    action = Action(
        kind=kind,
        target=target,
        params=params,
        state="pending",
        idempotency_key=idempotency_key,
        requested_by=requested_by,
        reason=reason,
        agent_id=agent_id,
        parent_id=parent_id,
        rule=rule,
        links={**(links or {}), **trace},
        attempts=0,
        max_attempts=max_attempts,
        timeout_s=timeout_s,
        created_at=now,
        updated_at=now,
    )
    session.add(action)
    session.flush()
    session.add(ActionAudit(action_id=action.id, at=now, actor=requested_by, to_state="pending", note=reason))
    counters.bump(session, counters.ACTIONS, action.kind, "pending")
    announce(session, ACTIONS)
    return action, True


def move(
    session: Session, action: Action, to_state: str, *, actor: str, now: datetime, note: str | None = None
) -> None:
    """Move ``action`` to ``to_state`` and audit it; a move the lifecycle forbids is a Conflict."""
    if to_state not in MOVES.get(action.state, ()):
        raise Conflict(f"action {action.id} is {action.state}; it cannot become {to_state}")
    session.add(
        ActionAudit(
            action_id=action.id, at=now, actor=actor, from_state=action.state, to_state=to_state, note=note
        )
    )
    counters.bump(session, counters.ACTIONS, action.kind, to_state)
    action.state, action.updated_at = to_state, now
    if to_state == "dispatched":
        action.dispatched_at = now
        action.attempts += 1
    if to_state in FINISHED:
        action.finished_at = now
    announce(session, ACTIONS)


def _due(agent_id: uuid.UUID, now: datetime) -> Select:
    return (
        select(Action)
        .where(
            Action.agent_id == agent_id,
            Action.state == "pending",
            or_(Action.not_before.is_(None), Action.not_before <= now),
        )
        .order_by(Action.created_at)
    )


def has_due(session: Session, agent_id: uuid.UUID, *, now: datetime) -> bool:
    """Whether ``claim`` would hand the agent anything: a read, so a long poll can wait in a
    read-only session and take the write lock only when there is work."""
    return session.scalars(_due(agent_id, now).limit(1)).first() is not None


def claim(session: Session, agent_id: uuid.UUID, *, now: datetime) -> list[Action]:
    """Hand the agent its due pending actions (dispatched, each exactly once: on PostgreSQL
    concurrent pollers skip rows another one has locked). An action for an instance that
    now belongs to another agent (reassigned since it was created) goes to that agent instead."""
    query = _due(agent_id, now)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for action in list(session.scalars(query)):
        owner = _owner(session, action)
        if owner is not None and owner.id != agent_id:
            _hand_over(session, action, owner, now)
            continue
        move(session, action, "dispatched", actor="dispatcher", now=now, note="handed to its agent")
        claimed.append(action)
    return claimed


def _owner(session: Session, action: Action) -> Agent | None:
    """The agent owning the catalog instance the action names (None: it names none, or an
    unknown or unowned one)."""
    params = action.params or {}
    address = params.get("instance")
    if not isinstance(address, str):
        return None
    service = params.get("service") if isinstance(params.get("service"), str) else action.target
    return session.scalars(
        select(Agent)
        .join(CatalogInstance, CatalogInstance.agent_id == Agent.id)
        .join(CatalogService, CatalogInstance.service_id == CatalogService.id)
        .where(CatalogService.name == service, CatalogInstance.address == address)
    ).first()


def _hand_over(session: Session, action: Action, owner: Agent, now: datetime) -> None:
    note = f"{(action.params or {})['instance']} now belongs to agent {owner.name}: handed to it instead"
    session.add(
        ActionAudit(action_id=action.id, at=now, actor="dispatcher", from_state="pending", to_state="pending",
                    note=note)
    )  # fmt: skip
    action.agent_id, action.updated_at = owner.id, now
    announce(session, ACTIONS)


def retry_delay(attempts: int) -> timedelta:
    """Capped exponential backoff between attempts: 1 s, 2 s, 4 s ... 60 s."""
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), 60))


def finish(
    session: Session,
    action: Action,
    *,
    ok: bool,
    output: dict[str, Any],
    error: str | None,
    actor: str,
    now: datetime,
) -> None:
    """Record an outcome; a failure with attempts left goes back to pending after a backoff."""
    action.result = {"output": output, "error": error}
    if ok:
        move(session, action, "succeeded", actor=actor, now=now)
    elif action.attempts < action.max_attempts:
        action.not_before = now + retry_delay(action.attempts)
        move(
            session,
            action,
            "pending",
            actor=actor,
            now=now,
            note=f"attempt {action.attempts} of {action.max_attempts} failed: {error}; retrying",
        )
    else:
        move(session, action, "failed", actor=actor, now=now, note=error)


def cancel(session: Session, action: Action, *, actor: str, now: datetime, note: str | None = None) -> None:
    """Cancel an unfinished action and its unfinished children."""
    if action.state in FINISHED:
        raise Conflict(f"action {action.id} is {action.state} already; there is nothing to cancel")
    move(session, action, "cancelled", actor=actor, now=now, note=note)
    for child in children(session, action):
        if child.state not in FINISHED:
            move(session, child, "cancelled", actor=actor, now=now, note="its parent was cancelled")


def children(session: Session, action: Action) -> list[Action]:
    return list(
        session.scalars(select(Action).where(Action.parent_id == action.id).order_by(Action.created_at))
    )


def expire_overdue(session: Session, *, now: datetime) -> int:
    """Dispatched or running past their timeout: retried while attempts remain, else failed."""
    overdue = 0
    for action in session.scalars(
        select(Action).where(Action.state.in_(("dispatched", "running")), Action.dispatched_at.is_not(None))
    ):
        assert action.dispatched_at is not None  # the query's condition
        if (now - action.dispatched_at).total_seconds() < action.timeout_s:
            continue
        error = f"no result within {action.timeout_s:g} s of dispatch"
        finish(session, action, ok=False, output={}, error=error, actor="engine", now=now)
        overdue += 1
    return overdue


def audit(session: Session, action_id: uuid.UUID) -> list[ActionAudit]:
    return list(
        session.scalars(
            select(ActionAudit).where(ActionAudit.action_id == action_id).order_by(ActionAudit.at)
        )
    )
