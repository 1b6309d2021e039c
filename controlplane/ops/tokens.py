"""API tokens: issuing and revoking them (admin). Session first, never commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from controlplane import audit
from controlplane.auth import digest, new_token
from controlplane.errors import NotFound
from controlplane.store.models import ApiToken


def create_token(
    session: Session, name: str, role: str, *, actor: str, created_by: str, now: datetime
) -> tuple[ApiToken, str]:
    """A new token and its secret (shown once: only the digest is stored), audited."""
    token = new_token()
    row = ApiToken(name=name, role=role, token_digest=digest(token), created_at=now, created_by=created_by)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="token.create", target=row.name,
                 details={"id": str(row.id), "role": row.role})  # fmt: skip
    return row, token


def revoke_token(session: Session, token_id: uuid.UUID, *, actor: str, now: datetime) -> None:
    """Revoke an active token, audited; NotFound when none is active under that id."""
    result = session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    if not cast(CursorResult, result).rowcount:  # an UPDATE's result has a row count
        raise NotFound(f"no active token {token_id}")
    audit.record(session, actor=actor, action="token.revoke", target=str(token_id))
