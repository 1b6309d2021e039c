"""The Schedules page (/tasks/schedules): every task schedule with its next and last run and
run count, for viewers; for operators, forms to create, edit, enable or disable and delete
one. Each form carries its CSRF token and the version it was read at, and saves through the
use cases the API calls (controlplane/tasks/schedules.py: the same checks, versions and
audit rows). A refused form comes back with the error and what was typed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from console.render import actor, client_address, render
from console.session import check_csrf, require_role
from controlplane import users
from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.ops.settings import parse_version
from controlplane.tasks import schedules
from controlplane.tasks.schedules import ScheduleSpec
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)

PAGE = "/tasks/schedules"
FIELDS = ("name", "task", "kind", "every_s", "crontab", "run_at", "args", "kwargs", "queue", "priority")
MAX_FIELD = 300_000  # characters of one form field (args and kwargs are capped again as JSON)


def _bad(field: str, why: str) -> Rejected:
    return Rejected.field(f"{field}: {why}", field, why, kind="body")


def _json(field: str, text: str, kind: type, empty: Any) -> Any:
    if not text.strip():
        return empty
    if len(text) > MAX_FIELD:
        raise _bad(field, f"is over {MAX_FIELD} characters")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _bad(field, f"is not JSON ({getattr(exc, 'msg', 'nested too deep')})") from None
    if not isinstance(value, kind):
        raise _bad(
            field,
            "must be a JSON list, e.g. [1, 2]" if kind is list else 'must be a JSON object, e.g. {"a": 1}',
        )
    return value


def _number(field: str, text: str, kind: type) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise _bad(
            field, "must be a whole number" if kind is int else "must be a number of seconds"
        ) from None


def _when(text: str) -> datetime | None:
    """A date and time as typed (ISO 8601, or the browser's datetime-local): UTC unless it says."""
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad("run_at", "must be a date and time, e.g. 2026-12-01T09:30 (UTC)") from None


def spec_from_form(form: dict[str, str], enabled: bool) -> ScheduleSpec:
    """The schedule a form describes; Rejected naming the field that cannot be read."""
    every_s, run_at = _number("every_s", form["every_s"], float), _when(form["run_at"])
    crontab = form["crontab"].strip() or None
    kind = schedules.kind_of(form["kind"] or None, every_s=every_s, crontab=crontab, run_at=run_at)
    return ScheduleSpec(task=form["task"].strip(), kind=kind, args=_json("args", form["args"], list, []),
                        kwargs=_json("kwargs", form["kwargs"], dict, {}), every_s=every_s, crontab=crontab,
                        run_at=run_at, queue=form["queue"].strip() or None,
                        priority=_number("priority", form["priority"], int), enabled=enabled)  # fmt: skip


def _form_of(row: Any) -> dict[str, str]:
    """A stored schedule as its edit form shows it."""
    return {
        "name": row.name, "task": row.task, "kind": row.kind,
        "every_s": "" if row.every_s is None else f"{row.every_s:g}", "crontab": row.crontab or "",
        "run_at": row.run_at.strftime("%Y-%m-%dT%H:%M:%S") if row.run_at else "",
        "args": json.dumps(row.args), "kwargs": json.dumps(row.kwargs), "queue": row.queue or "",
        "priority": "" if row.priority is None else str(row.priority), "enabled": "1" if row.enabled else "",
        "version": str(row.version),
    }  # fmt: skip


def _page(request: Request, session: Session, role: str, *, error: str | None = None,
          draft: dict | None = None, status: int = 200) -> Response:  # fmt: skip
    """The page; a refused ``draft`` (its ``target``: the schedule's name, or "" for a new one)
    goes back into the form it came from."""
    rows = schedules.list_schedules(session)
    draft = draft or {}
    forms = {row.name: draft if draft.get("target") == row.name else _form_of(row) for row in rows}
    settings = request.app.state.settings
    context = {
        "rows": rows,
        "forms": forms,
        "new": draft if draft.get("target") == "" else {"enabled": "1", "kind": "interval", "args": "[]",
                                                         "kwargs": "{}"},
        "error": error,
        "error_target": draft.get("target"),
        "can_edit": users.RANK.get(role, 0) >= users.RANK["operator"],
        "queues": settings.tasks.queues,
        "kinds": schedules.KINDS,
        "section": "schedules",
        "flower_url": settings.tasks.flower_url,
        "max_schedules": schedules.MAX_SCHEDULES,
    }  # fmt: skip
    return render(request, "tasks/schedules.html", context, block="list", status=status)


def _refused(request: Request, session: Session, role: str, exc: Exception, draft: dict) -> Response:
    if isinstance(exc, Conflict):
        message = f"{exc}. Nothing was saved."
    else:
        text = str(exc)
        message = f"{text[:1].upper()}{text[1:]}. Nothing was saved."
    # The use cases refuse before they write (a racing create only in a savepoint): the
    # session reads the store as it was.
    return _page(request, session, role, error=message, draft=draft, status=status_of(exc))


@router.get(PAGE)
def schedules_page(
    request: Request, role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    return _page(request, session, role)


def _draft(target: str, form: dict[str, str]) -> dict[str, str]:
    return {"target": target, **{k: (form.get(k) or "")[:MAX_FIELD] for k in (*FIELDS, "enabled", "version")}}


async def _schedule_form(request: Request) -> dict[str, str]:
    """A schedule form's text fields, its CSRF token checked (create and edit share them)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    check_csrf(request, form.get("csrf", ""))
    return form


@router.post(PAGE)
def create_schedule(
    request: Request,
    role: str = Depends(require_role("operator")),  # before the form: the role is checked first
    form: dict[str, str] = Depends(_schedule_form),
    session: Session = DB_SESSION,
) -> Response:
    """Create a schedule (as POST /api/v1/tasks/schedules does); audited."""
    draft = _draft("", form)
    name = draft["name"].strip()
    try:
        spec = spec_from_form(draft, enabled=bool(draft["enabled"]))
        schedules.create(session, name, spec, app=schedules.celery_for(request.app.state),
                         tasks=request.app.state.settings.tasks, actor=actor(request), now=utcnow(),
                         client=client_address(request))  # fmt: skip
    except (Rejected, Conflict) as exc:
        return _refused(request, session, role, exc, draft)
    return RedirectResponse(f"{PAGE}#schedule-{name}", status_code=303)


@router.post(PAGE + "/{name}")
def edit_schedule(
    request: Request,
    name: str,
    role: str = Depends(require_role("operator")),  # before the form: the role is checked first
    form: dict[str, str] = Depends(_schedule_form),
    session: Session = DB_SESSION,
) -> Response:
    """Replace a schedule if it is still at the version the form was read at; audited."""
    draft = _draft(name, form | {"name": name})
    version = draft["version"]
    try:
        spec = spec_from_form(draft, enabled=bool(draft["enabled"]))
        schedules.replace_schedule(session, name, spec, expected_version=parse_version(version),
                                   app=schedules.celery_for(request.app.state),
                                   tasks=request.app.state.settings.tasks, actor=actor(request), now=utcnow(),
                                   client=client_address(request))  # fmt: skip
    except Conflict as exc:  # saving the kept form again replaces what the other person saved
        draft["version"] = str(schedules.get(session, name).version)
        return _refused(request, session, role, exc, draft)
    except (Rejected, NotFound) as exc:
        return _refused(request, session, role, exc, draft)
    return RedirectResponse(f"{PAGE}#schedule-{name}", status_code=303)


@router.post(PAGE + "/{name}/enabled")
def enable_schedule(
    request: Request,
    name: str,
    csrf: str = Form(""),
    version: str = Form(""),
    enabled: str = Form(""),
    role: str = Depends(require_role("operator")),
    session: Session = DB_SESSION,
) -> Response:
    """Enable (enabled=1) or disable a schedule; audited."""
    check_csrf(request, csrf)
    try:
        schedules.set_enabled(session, name, enabled == "1", expected_version=parse_version(version),
                              app=schedules.celery_for(request.app.state),
                              tasks=request.app.state.settings.tasks, actor=actor(request), now=utcnow(),
                              client=client_address(request))  # fmt: skip
    except (Rejected, Conflict, NotFound) as exc:
        return _refused(request, session, role, exc, {"target": None})
    return RedirectResponse(f"{PAGE}#schedule-{name}", status_code=303)


@router.post(PAGE + "/{name}/delete")
def delete_schedule(
    request: Request,
    name: str,
    csrf: str = Form(""),
    version: str = Form(""),
    role: str = Depends(require_role("operator")),
    session: Session = DB_SESSION,
) -> Response:
    """Delete a schedule still at the version the form was read at; audited."""
    check_csrf(request, csrf)
    try:
        schedules.delete(session, name, expected_version=parse_version(version), actor=actor(request),
                         now=utcnow(), client=client_address(request))  # fmt: skip
    except (Rejected, Conflict, NotFound) as exc:
        return _refused(request, session, role, exc, {"target": None})
    return RedirectResponse(PAGE, status_code=303)
