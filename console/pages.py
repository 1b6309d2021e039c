"""Console pages. One URL renders the whole page, or one named block for htmx."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from jinja2_fragments.fastapi import Jinja2Blocks
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import __version__, audit, users
from controlplane.api.deps import db_session
from controlplane.auth import matches
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.store.models import User

templates = Jinja2Blocks(directory=Path(__file__).parent / "templates")
templates.env.globals["version"] = __version__

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """Raised by a page dependency when there is no console session."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if token is None:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str) -> None:
    expected = request.session.get("csrf")
    if not expected or not secrets.compare_digest(expected, submitted):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")


def require_session(request: Request) -> str:
    role = request.session.get("role")
    if role is None:
        raise LoginRequired
    return role


def require_role(min_role: str):  # type: ignore[no-untyped-def]
    """A page dependency: a session at ``min_role`` or above (403 below it)."""

    def check(role: str = Depends(require_session)) -> str:
        if users.RANK.get(role, 0) < users.RANK[min_role]:
            raise HTTPException(403, f"this page needs the {min_role} role; you are {role}")
        return role

    return check


def _actor(request: Request) -> str:
    return f"user:{request.session.get('user', '?')}"


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _render(
    request: Request, name: str, context: dict, block: str | None = None, status: int = 200
) -> Response:
    """The page, or only ``block`` for htmx; ``status`` for a page that refuses something."""
    context = {
        "csrf": csrf_token(request),
        "role": request.session.get("role"),
        "user": request.session.get("user"),
        **context,
    }
    if block and request.headers.get("HX-Request") == "true":
        return templates.TemplateResponse(request, name, context, status_code=status, block_name=block)
    return templates.TemplateResponse(request, name, context, status_code=status)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _render(request, "login.html", {"error": None})


@router.post("/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    token: str = Form(""),
    csrf: str = Form(""),
    session: Session = Depends(db_session),
) -> Response:
    """A user name and password, or (to bootstrap, before any user exists) the admin token."""
    check_csrf(request, csrf)
    limiter = request.app.state.login_limiter
    client, who = f"ip:{_client(request)}", f"user:{username or '(admin token)'}"
    wait = limiter.retry_after(client, who)
    if wait > 0:
        error = f"Too many failed logins: try again in {wait:.0f} s."
        response = _render(request, "login.html", {"error": error}, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    if username:
        user = users.authenticate(session, username, password)
        identity = (user.username, user.role) if user else None
    else:
        ok = bool(token) and matches(token, request.app.state.admin_token_digest)
        identity = ("admin-token", "admin") if ok else None
    if identity is None:
        limiter.failed(client, who)
        audit.record(session, actor=who, action="login.failed", client=_client(request))
        error = "That user name and password (or token) did not match."
        return _render(request, "login.html", {"error": error}, status=401)
    limiter.succeeded(who)
    audit.record(session, actor=f"user:{identity[0]}", action="login", client=_client(request))
    request.session.clear()
    request.session["user"], request.session["role"] = identity
    return RedirectResponse("/", status_code=303)


@router.get("/users")
def users_page(
    request: Request, _role: str = Depends(require_role("admin")), session: Session = Depends(db_session)
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
    session: Session = Depends(db_session),
) -> Response:
    """Add a user, change a role, disable or enable: each change is audited."""
    check_csrf(request, csrf)
    actor = _actor(request)
    try:
        if op == "add":
            users.create_user(session, username=username, password=password, role=role, actor=actor)
        elif op == "role":
            users.set_role(session, username=username, role=role, actor=actor)
        elif op in ("disable", "enable"):
            users.set_disabled(session, username=username, disabled=op == "disable", actor=actor)
        else:
            raise HTTPException(400, f"unknown change {op!r}: add, role, disable or enable")
    except (Rejected, Conflict, NotFound) as exc:  # refused before anything was written
        rows = session.scalars(select(User).order_by(User.username)).all()
        status = 422 if isinstance(exc, Rejected) else 409 if isinstance(exc, Conflict) else 404
        return _render(
            request, "users.html", {"users": rows, "roles": users.ROLES, "error": str(exc)}, status=status
        )
    return RedirectResponse("/users", status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
