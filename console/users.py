"""Console pages for signing in and out and for managing users."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.render import actor, client_address, render
from console.session import SESSION_KEY, check_csrf, current, require_role
from controlplane import audit, sessions, users
from controlplane.auth import matches
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.store.models import User
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.html", {"error": None})


def _verify(request: Request, username: str, password: str, token: str) -> users.PasswordCheck | bool | None:
    """The password (or the admin token) checked with no store transaction open."""
    if not username:
        return bool(token) and matches(token, request.app.state.admin_token_digest)
    with request.app.state.read_sessionmaker() as session:
        found = users.login_hash(session, username)
    return users.check_password(found, password)


def _open_session(
    session: Session, request: Request, verified: users.PasswordCheck | bool | None, client: str
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
    limiter, client = request.app.state.login_limiter, client_address(request)
    who = f"user:{username or '(admin token)'}"
    wait = limiter.attempt(who, client)
    if wait > 0:
        error = f"Too many failed logins: try again in {wait:.0f} s."
        response = render(request, "login.html", {"error": error}, status=429)
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
        return render(request, "login.html", {"error": error}, status=401)
    limiter.succeeded(who, client)
    request.session.clear()  # a new id at every login: a cookie planted before it is worth nothing
    request.session[SESSION_KEY] = session_id
    return RedirectResponse("/", status_code=303)


@router.get("/users")
def users_page(
    request: Request, _role: str = Depends(require_role("admin")), session: Session = DB_SESSION
) -> Response:
    rows = session.scalars(select(User).order_by(User.username)).all()
    return render(request, "users.html", {"users": rows, "roles": users.ROLES, "error": None})


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
    by = actor(request)
    try:
        if op == "add":
            users.create_user(session, username=username, password=password, role=role, actor=by)
        elif op == "role":
            users.set_role(session, username=username, role=role, actor=by)
        elif op == "password":
            users.set_password(session, username=username, password=password, actor=by)
        elif op in ("disable", "enable"):
            users.set_disabled(session, username=username, disabled=op == "disable", actor=by)
        else:
            raise HTTPException(400, f"unknown change {op!r}: add, role, password, disable or enable")
    except (Rejected, Conflict, NotFound) as exc:  # refused before anything was written
        rows = session.scalars(select(User).order_by(User.username)).all()
        context = {"users": rows, "roles": users.ROLES, "error": str(exc)}
        return render(request, "users.html", context, status=status_of(exc))
    return RedirectResponse("/users", status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    """Ends the session in the store, so the cookie (or a copy of it) is worth nothing."""
    if current(request) is not None:
        check_csrf(request, csrf)
        with request.app.state.sessionmaker.begin() as session:
            sessions.end(session, request.session[SESSION_KEY])
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
