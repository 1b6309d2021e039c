"""The settings page (admins): the stored settings documents, each editable as JSON with
the version it was read at (a stale version is refused, as PUT /api/v1/settings refuses
it), and the server's effective configuration, read-only, with every secret redacted."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.render import actor, client_address, render
from console.session import check_csrf, require_role
from controlplane.clock import utcnow
from controlplane.errors import Conflict, Forbidden, Rejected
from controlplane.ops.settings import (
    RULES_PREFIX,
    check_type,
    parse_value,
    parse_version,
    replace_setting,
    reserved,
)
from controlplane.settings import Settings
from controlplane.store.models import InfrastructureSetting
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)

SECRET_NAME = re.compile(r"token|secret|passw|credential|basic_auth|access_key|api_key|private_key", re.I)
HIDDEN = "•••••• (set, hidden)"


def _redact_url(value: str) -> str:
    """A URL with its password, and any secret-looking query parameter, masked; the rest
    left exactly as written (re-assembling it would normalize sqlite:////abs/path)."""
    parts = urlsplit(value)
    if parts.password:
        value = value.replace(f":{parts.password}@", ":••••••@", 1)
    for pair in parts.query.split("&"):
        key, _, secret = pair.partition("=")
        if secret and SECRET_NAME.search(key):
            value = value.replace(pair, f"{key}=••••••", 1)
    return value


def _shown(value: Any, secret: bool) -> str:
    if value is None or value == [] or value == {}:
        return "(unset)"
    if isinstance(value, list):
        return ", ".join(_shown(v, secret) for v in value)
    if isinstance(value, dict):
        return json.dumps({k: v if not SECRET_NAME.search(k) else HIDDEN for k, v in value.items()})
    if isinstance(value, str) and "://" in value:
        return _redact_url(value) if not secret or urlsplit(value).hostname else HIDDEN
    return HIDDEN if secret else str(value)


def effective_config(model: BaseModel, prefix: str = "COREPLANE_") -> list[dict]:
    """Every setting of the server as (environment name, value, description); secrets
    (fields kept out of repr, or named like one) show only that they are set, and URLs
    keep their host but lose their password."""
    rows = []
    for name, field in type(model).model_fields.items():
        value, env = getattr(model, name), f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            rows += effective_config(value, env + "__")
            continue
        secret = not field.repr or bool(SECRET_NAME.search(name))
        rows.append({"name": env, "value": _shown(value, secret), "description": field.description or ""})
    return rows


def _stored(session: Session) -> list[InfrastructureSetting]:
    # Credentials share the table (auth.*, console.*): never shown, as the API never serves them.
    rows = session.scalars(select(InfrastructureSetting).order_by(InfrastructureSetting.setting_type))
    return [r for r in rows if not reserved(r.setting_type)]


def _page(request: Request, session: Session, *, error: str | None = None, status: int = 200,
          draft: dict | None = None) -> Response:  # fmt: skip
    settings: Settings = request.app.state.settings
    rows: list[dict[str, Any]] = [
        {"row": r, "json": json.dumps(r.value, indent=2, sort_keys=True),
         "editable": not r.setting_type.startswith(RULES_PREFIX)} for r in _stored(session)
    ]  # fmt: skip
    draft = draft or {}
    # A refused draft goes back into the form it came from: its setting's, or "Add a setting".
    new_draft = draft if draft.get("setting_type") not in {r["row"].setting_type for r in rows} else {}
    context = {
        "stored": rows,
        "config": effective_config(settings),
        "error": error,
        "draft": draft,
        "new_draft": new_draft,
    }
    return render(request, "settings.html", context, status=status)


def _conflict(session: Session, setting_type: str, version_read: str) -> str:
    """What the form says when someone saved in between: where the setting is now."""
    current = session.scalars(
        select(InfrastructureSetting).where(InfrastructureSetting.setting_type == setting_type)
    ).first()
    now_at = "not stored any more"
    if current is not None:
        now_at = (f"version {current.version}, saved by {current.updated_by or '?'} "
                  f"at {current.updated_at:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
    return (
        f"Someone else changed {setting_type!r} after you read version {version_read}: it is now at "
        f"{now_at}. Nothing was saved. Your text is kept below: apply your change to the current "
        "value and save again."
    )


@router.get("/settings")
def settings_page(
    request: Request, _role: str = Depends(require_role("admin")), session: Session = DB_SESSION
) -> Response:
    return _page(request, session)


@router.post("/settings")
def settings_change(
    request: Request,
    setting_type: str = Form(""),
    value: str = Form(""),
    version: str = Form(""),
    csrf: str = Form(""),
    _role: str = Depends(require_role("admin")),
    session: Session = DB_SESSION,
) -> Response:
    """Replace one setting if it is still at the version the form was read at; audited."""
    check_csrf(request, csrf)
    setting_type = setting_type.strip()
    draft = {"setting_type": setting_type, "value": value}

    def refuse(message: str, status: int) -> Response:
        return _page(request, session, error=message, status=status, draft=draft)

    try:
        check_type(setting_type)  # first: a name it may not edit is refused whatever the text
        expected = parse_version(version)
        replace_setting(
            session,
            setting_type=setting_type,
            value=parse_value(setting_type, value),
            expected_version=expected,
            actor=actor(request),
            updated_by=actor(request),
            now=utcnow(),
            client=client_address(request),
        )
    except Conflict:
        return refuse(_conflict(session, setting_type, version), 409)
    except (Rejected, Forbidden) as exc:
        return refuse(f"{str(exc)[0].upper()}{str(exc)[1:]}. Nothing was saved.", status_of(exc))
    return RedirectResponse(f"/settings#setting-{setting_type}", status_code=303)
