"""Console users: passwords hashed with Argon2id (argon2-cffi), roles viewer < operator <
admin; every change goes to the audit log. Functions take the session first and
never commit."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import sessions
from controlplane.audit import record
from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.store.models import User

ROLES = ("viewer", "operator", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}
MIN_PASSWORD = 12
USERNAME = re.compile(r"[A-Za-z0-9._\-]{1,100}")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY = _hasher.hash("not a password anyone has")


def _check(role: str, password: str | None) -> None:
    if role not in RANK:
        raise Rejected.field(f"role must be one of {', '.join(ROLES)}", "role", "unknown role", kind="body")
    if password is not None and len(password) < MIN_PASSWORD:
        why = f"a password needs at least {MIN_PASSWORD} characters"
        raise Rejected.field(why, "password", "too short", kind="body")


def create_user(session: Session, *, username: str, password: str, role: str, actor: str) -> User:
    _check(role, password)
    if not USERNAME.fullmatch(username):
        why = "a user name is 1 to 100 letters, digits, '.', '_' or '-'"
        raise Rejected.field(why, "username", "invalid name", kind="body")
    # Hashed before the first query: Argon2 is slow on purpose, and the caller's
    # transaction (SQLite's write lock) only begins with the first statement.
    password_hash = _hasher.hash(password)
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"a user named {username!r} exists already")
    user = User(username=username, password_hash=password_hash, role=role, created_at=utcnow())
    session.add(user)
    record(session, actor=actor, action="user.create", target=username, details={"role": role})
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def set_role(session: Session, *, username: str, role: str, actor: str) -> User:
    """A new role, in force at once: the user's open sessions end (they log in again)."""
    _check(role, None)
    user = get_user(session, username)
    record(session, actor=actor, action="user.role", target=username, details={"from": user.role, "to": role})
    if user.role != role:
        sessions.end_all_of(session, user.id)
    user.role = role
    return user


def set_disabled(session: Session, *, username: str, disabled: bool, actor: str) -> User:
    user = get_user(session, username)
    user.disabled = disabled
    if disabled:
        sessions.end_all_of(session, user.id)
    record(session, actor=actor, action="user.disable" if disabled else "user.enable", target=username)
    return user


def set_password(session: Session, *, username: str, password: str, actor: str) -> User:
    """A new password; every open session of the user ends (whoever knew the old one
    is logged out too)."""
    _check("viewer", password)
    password_hash = _hasher.hash(password)  # before the first query, as in create_user
    user = get_user(session, username)
    user.password_hash = password_hash
    sessions.end_all_of(session, user.id)
    record(session, actor=actor, action="user.password", target=username)
    return user


@dataclass(frozen=True)
class PasswordCheck:
    """A password that matched a user's hash, checked outside any transaction."""

    user_id: uuid.UUID
    checked_hash: str  # the hash it matched: a password changed since then does not log in
    new_hash: str | None  # the same password under today's Argon2 parameters, to store


def login_hash(session: Session, username: str) -> tuple[uuid.UUID, str] | None:
    """(id, password hash) of the enabled user with this name: a read, nothing else."""
    row = session.execute(
        select(User.id, User.password_hash).where(User.username == username, User.disabled.is_(False))
    ).first()
    return (row.id, row.password_hash) if row else None


def check_password(found: tuple[uuid.UUID, str] | None, password: str) -> PasswordCheck | None:
    """Verify ``password`` against ``found`` (from ``login_hash``), in about the same time
    when there is no such user. It touches no store: call it with no transaction open,
    since an Argon2 check takes tens of milliseconds on purpose and a write lock held
    meanwhile made a burst of logins fail."""
    try:
        _hasher.verify(found[1] if found else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if found is None:
        return None
    user_id, password_hash = found
    new_hash = _hasher.hash(password) if _hasher.check_needs_rehash(password_hash) else None
    return PasswordCheck(user_id, password_hash, new_hash)


def confirm_login(session: Session, check: PasswordCheck) -> User | None:
    """The user of a checked password, if still enabled with that password (it may have
    changed between the check and this transaction); stores an upgraded hash."""
    user = session.get(User, check.user_id)
    if user is None or user.disabled or user.password_hash != check.checked_hash:
        return None
    if check.new_hash:
        user.password_hash = check.new_hash
    return user
