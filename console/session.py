"""Who is on the console: the session behind the signed cookie, its CSRF token and the
role a page needs. The store says who the person is on every request."""

from __future__ import annotations

import secrets
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import Depends, HTTPException, Request

from controlplane import sessions, users
from controlplane.sessions import Identity


class LoginRequired(Exception):
    """Raised by a page dependency when there is no console session."""


# The signed cookie holds the session id (after login) or the CSRF token (before): who
# the person is and their role are read from the store on every request.
SESSION_KEY, _PRE_LOGIN_CSRF = "sid", "csrf"
_UNRESOLVED = object()


def console_identity(app: Any, cookie: MutableMapping[str, Any]) -> Identity | None:
    """The console session behind a cookie, as the store says now; a cookie whose session
    ended loses its id. For pages and the live websocket alike."""
    session_id = cookie.get(SESSION_KEY)
    if not session_id:
        return None
    with app.state.read_sessionmaker() as session:  # every request: never the write lock
        identity = sessions.resolve(session, session_id, admin_token_digest=app.state.admin_token_digest)
    if identity is None:
        cookie.pop(SESSION_KEY, None)
    return identity


def current(request: Request) -> Identity | None:
    """This request's identity, read once per request."""
    identity = getattr(request.state, "console_identity", _UNRESOLVED)
    if identity is _UNRESOLVED:
        identity = request.state.console_identity = console_identity(request.app, request.session)
    return identity  # type: ignore[return-value]


def csrf_token(request: Request) -> str:
    identity = current(request)
    if identity is not None:
        return identity.csrf
    token = request.session.get(_PRE_LOGIN_CSRF)
    if token is None:
        token = request.session[_PRE_LOGIN_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str) -> None:
    identity = current(request)
    expected = identity.csrf if identity is not None else request.session.get(_PRE_LOGIN_CSRF)
    if not expected or not secrets.compare_digest(expected, submitted):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")


def require_session(request: Request) -> str:
    identity = current(request)
    if identity is None:
        raise LoginRequired
    return identity.role


def require_role(min_role: str) -> Callable[..., str]:
    """A page dependency: a session at ``min_role`` or above (403 below it)."""

    def check(role: str = Depends(require_session)) -> str:
        if users.RANK.get(role, 0) < users.RANK[min_role]:
            raise HTTPException(403, f"this page needs the {min_role} role; you are {role}")
        return role

    return check


def current_user(request: Request) -> str:
    identity = current(request)
    return identity.username if identity else "?"
