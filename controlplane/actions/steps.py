"""What every plan does with its action: add a step (a child action for an agent), and
end the action failed or succeeded. Shared by ``plans`` and ``failover`` so the steps'
timeout, reason and the engine's audit notes stay the same for every plan."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from controlplane.actions import lifecycle
from controlplane.store.models import Action

ACTOR = "engine"


def add_step(
    session: Session, parent: Action, kind: str, agent_id: uuid.UUID | None, params: dict, now: datetime
) -> Action:
    """A child of ``parent`` for the agent ``agent_id`` to carry out."""
    child, _ = lifecycle.create(
        session,
        kind=kind,
        target=parent.target,
        params=params,
        requested_by=f"action:{parent.id}",
        reason=f"step of {parent.kind} {parent.id}",
        agent_id=agent_id,
        parent_id=parent.id,
        now=now,
        # A step is one command to one backend: it must not hold up its plan for as long
        # as the plan itself may take.
        timeout_s=min(parent.timeout_s, 30.0),
    )
    return child


def fail(session: Session, action: Action, why: str, now: datetime, **output: object) -> None:
    action.result = {"output": output, "error": why}
    lifecycle.move(session, action, "failed", actor=ACTOR, now=now, note=why)


def succeed(session: Session, action: Action, now: datetime, note: str, **output: object) -> None:
    action.result = {"output": output, "error": None}
    lifecycle.move(session, action, "succeeded", actor=ACTOR, now=now, note=note)
