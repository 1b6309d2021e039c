"""Console pages. One URL renders the whole page, or one named block for htmx."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from jinja2_fragments.fastapi import Jinja2Blocks
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane import __version__
from controlplane.api.deps import db_session
from controlplane.auth import matches
from controlplane.backends import probe_all
from controlplane.store.models import InfrastructureMetric
from controlplane.telemetry import HEARTBEAT_METRIC

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


def _render(request: Request, name: str, context: dict, block: str | None = None) -> Response:
    context = {"csrf": csrf_token(request), "role": request.session.get("role"), **context}
    if block and request.headers.get("HX-Request") == "true":
        return templates.TemplateResponse(request, name, context, block_name=block)
    return templates.TemplateResponse(request, name, context)


def _agents(session: Session) -> list[dict]:
    rows = session.execute(
        select(InfrastructureMetric.service_name, func.max(InfrastructureMetric.timestamp))
        .where(InfrastructureMetric.metric_type == HEARTBEAT_METRIC)
        .group_by(InfrastructureMetric.service_name)
        .order_by(InfrastructureMetric.service_name)
    ).all()
    return [{"name": name, "last_seen": last_seen} for name, last_seen in rows]


def _cache_ratios(session: Session, now: datetime) -> list[dict]:
    """The latest hit ratio per cache namespace and layer, from the agents' cache collector."""
    rows = session.execute(
        select(InfrastructureMetric.timestamp, InfrastructureMetric.value, InfrastructureMetric.tags)
        .where(
            InfrastructureMetric.metric_type == "coreplane_cache_hit_ratio",
            InfrastructureMetric.timestamp >= now - timedelta(minutes=5),
        )
        .order_by(InfrastructureMetric.timestamp.desc())
        .limit(5000)
    ).all()
    latest: dict[tuple[str, str], dict] = {}
    for at, value, tags in rows:
        key = ((tags or {}).get("namespace", "?"), (tags or {}).get("layer", "?"))
        latest.setdefault(key, {"namespace": key[0], "layer": key[1], "hit_ratio": value, "at": at})
    return sorted(latest.values(), key=lambda r: (r["namespace"], r["layer"]))


@router.get("/")
async def home(
    request: Request, _role: str = Depends(require_session), session: Session = Depends(db_session)
) -> Response:
    backends = await probe_all(request.app.state.settings, request.app.state.engine)
    return _render(
        request,
        "home.html",
        {
            "backends": backends,
            "agents": _agents(session),
            "cache": _cache_ratios(session, datetime.now(UTC).replace(tzinfo=None)),
        },
        block="backends",
    )


@router.get("/login")
def login_form(request: Request) -> Response:
    return _render(request, "login.html", {"error": None})


@router.post("/login")
def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
    check_csrf(request, csrf)
    if not token or not matches(token, request.app.state.admin_token_digest):
        response = _render(request, "login.html", {"error": "That token is not valid."})
        response.status_code = 401
        return response
    request.session.clear()
    request.session["role"] = "admin"
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
