"""The audit log: every change a person, a token or an agent made (who, what, to which
thing, from where). The caller commits, with the change itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.store.models import AuditEntry


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    client: str | None = None,
) -> None:
    now = utcnow()
    session.add(AuditEntry(at=now, actor=actor, action=action, target=target, details=details, client=client))
