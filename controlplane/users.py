"""Console users: passwords hashed with Argon2id (argon2-cffi), roles viewer < operator <
admin; every change goes to the audit log. Functions take the session first and
never commit."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

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
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"a user named {username!r} exists already")
    user = User(username=username, password_hash=_hasher.hash(password), role=role, created_at=utcnow())
    session.add(user)
    record(session, actor=actor, action="user.create", target=username, details={"role": role})
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def set_role(session: Session, *, username: str, role: str, actor: str) -> User:
    _check(role, None)
    user = get_user(session, username)
    record(session, actor=actor, action="user.role", target=username, details={"from": user.role, "to": role})
    user.role = role
    return user


def set_disabled(session: Session, *, username: str, disabled: bool, actor: str) -> User:
    user = get_user(session, username)
    user.disabled = disabled
    record(session, actor=actor, action="user.disable" if disabled else "user.enable", target=username)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The enabled user with this name and password, or None (in about the same time
    either way). A hash made with older parameters is upgraded on the way."""
    user = session.scalars(select(User).where(User.username == username)).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user
