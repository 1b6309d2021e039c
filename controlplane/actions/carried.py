"""Actions the control plane carries out itself, on the leader, rather than through an
agent: an area's operations on a backend the control plane reaches (task operations on
Celery, queue operations on RabbitMQ). The leader's loop takes each pending one, does it
and ends it succeeded or failed in the same round; who asked and why go to the audit log.
Without the backend, the area's plans (``unavailable``) fail them with how to configure it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.actions import lifecycle
from controlplane.actions.steps import ACTOR, fail, succeed
from controlplane.errors import Conflict, NotFound, Rejected, Unavailable
from controlplane.store.models import Action

Outcome = tuple[str, dict[str, Any]]  # the note the action ends with, and its output


class OperationFailed(Exception):
    """The operation could not be carried out; the action fails with this reason."""


# What an operation raises when it cannot be done: the action fails with the message.
REFUSALS = (OperationFailed, Rejected, Conflict, NotFound, Unavailable)


def carry_out(
    session: Session,
    action: Action,
    now: datetime,
    do: Callable[[], Outcome],
    *,
    target: str,
    backend_errors: tuple[type[BaseException], ...],
    backend: str,
) -> None:
    """Do one pending operation (``do``) and end its action: failed with the reason when
    it is refused or ``backend`` raises one of ``backend_errors``, else succeeded, audited."""
    lifecycle.move(session, action, "running", actor=ACTOR, now=now, note="carried out by the control plane")
    try:
        note, output = do()
    except REFUSALS as exc:
        return fail(session, action, str(exc), now)
    except backend_errors as exc:
        return fail(session, action, f"{backend} refused: {type(exc).__name__}: {exc}", now)
    audit.record(
        session,
        actor=action.requested_by,
        action=action.kind,
        target=target,
        details={"action": str(action.id), "reason": action.reason, "params": action.params, "note": note},
    )
    return succeed(session, action, now, note, **output)


def pending(session: Session, kinds: tuple[str, ...]) -> list[Action]:
    """The pending actions of ``kinds``, oldest first."""
    return list(
        session.scalars(
            select(Action)
            .where(Action.kind.in_(kinds), Action.state == "pending")
            .order_by(Action.created_at)
        )
    )


def unavailable(reason: str) -> Callable[[Session, Action, datetime], None]:
    """The plan of an operation whose backend the leader lacks: it fails with ``reason``
    (how to configure the backend). With the backend, the area carries them out first."""

    def plan(session: Session, action: Action, now: datetime) -> None:
        if action.state in ("pending", "running"):
            if action.state == "pending":
                lifecycle.move(session, action, "running", actor=ACTOR, now=now)
            fail(session, action, reason, now)

    return plan
