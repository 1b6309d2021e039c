"""Console pages. One URL renders the whole page, or one named block for htmx."""

from __future__ import annotations

import secrets
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from jinja2_fragments.fastapi import Jinja2Blocks
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import __version__, audit, sessions, users
from controlplane.api.deps import DB_SESSION
from controlplane.auth import matches
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.sessions import Identity
from controlplane.store.models import User

templates = Jinja2Blocks(directory=Path(__file__).parent / "templates")
templates.env.globals["version"] = __version__

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """Raised by a page dependency when there is no console session."""


# The signed cookie holds the session id (after login) or the CSRF token (before): who
# the person is and their role are read from the store on every request.
_SID, _PRE_LOGIN_CSRF = "sid", "csrf"
_UNRESOLVED = object()


def console_identity(app: Any, cookie: MutableMapping[str, Any]) -> Identity | None:
    """The console session behind a cookie, as the store says now; a cookie whose session
    ended loses its id. For pages and the live websocket alike."""
    session_id = cookie.get(_SID)
    if not session_id:
        return None
    with app.state.read_sessionmaker() as session:  # every request: never the write lock
        identity = sessions.resolve(session, session_id, admin_token_digest=app.state.admin_token_digest)
    if identity is None:
        cookie.pop(_SID, None)
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


def require_role(min_role: str):  # type: ignore[no-untyped-def]
    """A page dependency: a session at ``min_role`` or above (403 below it)."""

    def check(role: str = Depends(require_session)) -> str:
        if users.RANK.get(role, 0) < users.RANK[min_role]:
            raise HTTPException(403, f"this page needs the {min_role} role; you are {role}")
        return role

    return check


def current_user(request: Request) -> str:
    identity = current(request)
    return identity.username if identity else "?"


def _actor(request: Request) -> str:
    return f"user:{current_user(request)}"


def _client(request: Request) -> str:
    # The TCP peer, or the address a configured trusted proxy forwarded
    # (COREPLANE_SERVER__TRUSTED_PROXIES): uvicorn rewrites request.client only then.
    return request.client.host if request.client else "?"


def _render(
    request: Request, name: str, context: dict, block: str | None = None, status: int = 200
) -> Response:
    """The page, or only ``block`` for htmx; ``status`` for a page that refuses something."""
    identity = current(request)
    context = {
        "csrf": csrf_token(request),
        "role": identity.role if identity else None,
        "user": identity.username if identity else None,
        **context,
    }
    if block and request.headers.get("HX-Request") == "true":
        return templates.TemplateResponse(request, name, context, status_code=status, block_name=block)
    return templates.TemplateResponse(request, name, context, status_code=status)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _render(request, "login.html", {"error": None})


def _verify(request: Request, username: str, password: str, token: str) -> users.PasswordCheck | bool:
    """The password (or the admin token) checked with no store transaction open."""
    if not username:
        return bool(token) and matches(token, request.app.state.admin_token_digest)
    with request.app.state.read_sessionmaker() as session:
        found = users.login_hash(session, username)
    return users.check_password(found, password)


def _open_session(
    session: Session, request: Request, verified: users.PasswordCheck | bool, client: str
) -> tuple[str, str] | None:
    """(session id, user name) of a new console session for a verified credential."""
    if isinstance(verified, users.PasswordCheck):
        user = users.confirm_login(session, verified)
        if user is None:  # disabled, or a new password, since the check
            return None
        return sessions.start(session, username=user.username, user_id=user.id, client=client), user.username
    if not verified:
        return None
    admin_digest = request.app.state.admin_token_digest
    name = sessions.ADMIN_TOKEN_USER
    return sessions.start(session, username=name, credential_digest=admin_digest, client=client), name


@router.post("/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    token: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    """A user name and password, or (to bootstrap, before any user exists) the admin token.

    No store transaction is open while the password is checked (Argon2 is slow on
    purpose): one read, the check, then one short write of the outcome."""
    check_csrf(request, csrf)
    limiter, client = request.app.state.login_limiter, _client(request)
    who = f"user:{username or '(admin token)'}"
    wait = limiter.attempt(who, client)
    if wait > 0:
        error = f"Too many failed logins: try again in {wait:.0f} s."
        response = _render(request, "login.html", {"error": error}, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    verified = _verify(request, username, password, token)
    with request.app.state.sessionmaker.begin() as session:
        opened = _open_session(session, request, verified, client)
        if opened is None:
            audit.record(session, actor=who, action="login.failed", client=client)
        else:
            session_id, name = opened
            audit.record(session, actor=f"user:{name}", action="login", client=client)
    if opened is None:
        error = "That user name and password (or token) did not match."
        return _render(request, "login.html", {"error": error}, status=401)
    limiter.succeeded(who, client)
    request.session.clear()  # a new id at every login: a cookie planted before it is worth nothing
    request.session[_SID] = session_id
    return RedirectResponse("/", status_code=303)


@router.get("/users")
def users_page(
    request: Request, _role: str = Depends(require_role("admin")), session: Session = DB_SESSION
) -> Response:
    rows = session.scalars(select(User).order_by(User.username)).all()
    return _render(request, "users.html", {"users": rows, "roles": users.ROLES, "error": None})


@router.post("/users")
def users_change(
    request: Request,
    op: str = Form(...),
    username: str = Form(...),
    role: str = Form("viewer"),
    password: str = Form(""),
    csrf: str = Form(""),
    _role: str = Depends(require_role("admin")),
    session: Session = DB_SESSION,
) -> Response:
    """Add a user, change a role or password, disable or enable: each change is audited;
    the last three end the user's open sessions."""
    check_csrf(request, csrf)
    actor = _actor(request)
    try:
        if op == "add":
            users.create_user(session, username=username, password=password, role=role, actor=actor)
        elif op == "role":
            users.set_role(session, username=username, role=role, actor=actor)
        elif op == "password":
            users.set_password(session, username=username, password=password, actor=actor)
        elif op in ("disable", "enable"):
            users.set_disabled(session, username=username, disabled=op == "disable", actor=actor)
        else:
            raise HTTPException(400, f"unknown change {op!r}: add, role, password, disable or enable")
    except (Rejected, Conflict, NotFound) as exc:  # refused before anything was written
        rows = session.scalars(select(User).order_by(User.username)).all()
        status = 422 if isinstance(exc, Rejected) else 409 if isinstance(exc, Conflict) else 404
        return _render(
            request, "users.html", {"users": rows, "roles": users.ROLES, "error": str(exc)}, status=status
        )
    return RedirectResponse("/users", status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    """Ends the session in the store, so the cookie (or a copy of it) is worth nothing."""
    if current(request) is not None:
        check_csrf(request, csrf)
        with request.app.state.sessionmaker.begin() as session:
            sessions.end(session, request.session[_SID])
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
