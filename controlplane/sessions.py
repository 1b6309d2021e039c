"""Console sessions, kept in the store so that they can be ended: logout deletes one, a
disable, role change or password change deletes all of a user's, and a new admin token
ends the admin-token logins made with the old one.

The browser's signed cookie holds only a random session id; the store keeps its SHA-256
(a copy of the table is no key to anyone's session). Every request resolves the id to
the user's current role and state: nothing about the person is trusted from the cookie.
Functions take the session first and never commit.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Result, delete
from sqlalchemy.orm import Session

from controlplane.auth import digest
from controlplane.clock import utcnow
from controlplane.store.models import ConsoleSession, User

LIFETIME = timedelta(hours=12)
ADMIN_TOKEN_USER = "admin-token"  # noqa: S105 - the user name of an admin-token login


@dataclass(frozen=True)
class Identity:
    """Who a console session is, as the store says now."""

    username: str
    role: str
    csrf: str


def start(
    session: Session,
    *,
    username: str,
    user_id: uuid.UUID | None = None,
    credential_digest: str | None = None,
    client: str | None = None,
    now: datetime | None = None,
) -> str:
    """A new session for a user (``user_id``) or an admin-token login (``credential_digest``):
    returns the id the cookie carries (only its digest is stored)."""
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id_digest=digest(session_id),
            username=username,
            user_id=user_id,
            credential_digest=credential_digest,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + LIFETIME,
            client=(client or "")[:100] or None,
        )
    )
    return session_id


def resolve(
    session: Session, session_id: str, *, admin_token_digest: str, now: datetime | None = None
) -> Identity | None:
    """The identity behind ``session_id``, or None when the session has ended: logged out,
    expired, its user disabled or gone, or (an admin-token login) the admin token changed.
    A pure read (``last_seen_at`` stays the login time), so every request can afford it."""
    now = now or utcnow()
    row = session.get(ConsoleSession, digest(session_id))
    if row is None or row.expires_at <= now:
        return None
    if row.user_id is None:
        if not row.credential_digest or not _same_digest(row.credential_digest, admin_token_digest):
            return None
        role = "admin"
    else:
        user = session.get(User, row.user_id)
        if user is None or user.disabled:
            return None
        role = user.role
    return Identity(username=row.username, role=role, csrf=row.csrf)


def _same_digest(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def end(session: Session, session_id: str) -> None:
    """Logout: the session's row goes, so a replayed cookie finds nothing."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.id_digest == digest(session_id)))


def end_all_of(session: Session, user_id: uuid.UUID) -> int:
    """Every session of one user (after a disable, role or password change)."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user_id))
    return _deleted(result)


def prune_expired(conn: Session | Connection, now: datetime | None = None) -> int:
    """Sessions past their lifetime (the maintenance loop calls this)."""
    result = conn.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= (now or utcnow())))
    return _deleted(result)


def _deleted(result: Result[Any]) -> int:
    # A DELETE's result is a CursorResult, which has the row count; execute() is typed as Result.
    return cast("CursorResult[Any]", result).rowcount or 0
