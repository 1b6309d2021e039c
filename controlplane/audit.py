"""The audit log: every change a person, a token or an agent made (who, what, to which
thing, from where). The caller commits, with the change itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

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
    now = datetime.now(UTC).replace(tzinfo=None)
    session.add(AuditEntry(at=now, actor=actor, action=action, target=target, details=details, client=client))
