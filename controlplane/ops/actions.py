"""Create an action with its audit row: the one use case behind POST /api/v1/actions and
the console's confirmation step. Session first, never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.actions import lifecycle, plans
from controlplane.errors import NotFound, Rejected
from controlplane.store.models import Action, Agent

KINDS = sorted({*plans.PLANS, *plans.AGENT_KINDS})


@dataclass(frozen=True)
class ActionRequest:
    """What a caller asks for; ``agent`` names who carries out an agent action (by default
    the agent that watches the target, and params.instance when given)."""

    kind: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    idempotency_key: str | None = None
    agent: str | None = None
    max_attempts: int = 1
    timeout_s: float = 60.0


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise Rejected.field(
            f"unknown action kind {kind!r}; known: {', '.join(KINDS)}", "kind", "unknown kind", kind="body"
        )


def _agent_for(session: Session, wanted: ActionRequest) -> uuid.UUID | None:
    """The agent of an agent action (None for a plan: its steps name theirs)."""
    if wanted.kind in plans.PLANS:
        return None
    if wanted.agent:
        agent = session.scalars(
            select(Agent).where(Agent.name == wanted.agent, Agent.revoked.is_(False))
        ).first()
        if agent is None:
            raise Rejected.field(
                f"no registered agent named {wanted.agent!r}", "agent", "unknown agent", kind="body"
            )
        return agent.id
    instance_name = wanted.params.get("instance")
    instance = plans.agent_of(session, wanted.target, instance_name)
    if instance is None:
        raise Rejected.field(
            f"no agent watches {wanted.target!r}"
            + (f" instance {instance_name!r}" if instance_name else "")
            + ": name one with `agent`",
            "agent",
            "no agent",
            kind="body",
        )
    return instance.agent_id


def create_action(
    session: Session, wanted: ActionRequest, *, actor: str, now: datetime, client: str | None = None
) -> tuple[Action, bool]:
    """A new pending action, audited, or the one already made with the same idempotency key
    (created=False, no second audit row). Rejected, naming the field, when the kind, its
    params or its agent are wrong."""
    check_kind(wanted.kind)
    plans.check_params(wanted.kind, wanted.params)
    action, created = lifecycle.create(
        session,
        kind=wanted.kind,
        target=wanted.target,
        params=wanted.params,
        requested_by=actor,
        reason=wanted.reason,
        idempotency_key=wanted.idempotency_key,
        agent_id=_agent_for(session, wanted),
        max_attempts=wanted.max_attempts,
        timeout_s=wanted.timeout_s,
        now=now,
    )
    if created:
        audit.record(session, actor=actor, action="action.create", target=f"{action.kind} {action.target}",
                     details={"id": str(action.id)}, client=client)  # fmt: skip
    return action, created


def cancel_action(session: Session, action_id: uuid.UUID, *, actor: str, now: datetime, note: str) -> Action:
    """Cancel an action (and its pending steps), audited. NotFound when there is none."""
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    lifecycle.cancel(session, action, actor=actor, now=now, note=note)
    audit.record(session, actor=actor, action="action.cancel", target=str(action.id))
    return action
