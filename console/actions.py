"""Console pages for actions: the list, one action's lifecycle and audit trail (refreshed
while it runs), and triggering one (operators) through a confirmation step that says
exactly what will happen before anything does."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.render import actor, client_address, render
from console.session import check_csrf, require_role
from controlplane.actions import lifecycle, plans
from controlplane.catalog.instances import describe
from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected
from controlplane.ops.actions import ActionRequest, create_action
from controlplane.store.models import Action, RuleEvaluation
from controlplane.tasks import operations
from controlplane.web import DB_SESSION

router = APIRouter(include_in_schema=False)
KINDS = {
    "cache.invalidate": "Invalidate cache entries (tags, a prefix or keys) in every process",
    "failover": "Promote a Redis replica and repoint the others",
    "scale": "Grow or shrink the Celery worker pool",
    "drain": "Set an HAProxy server's state (drain, maint, ready)",
}
# Task operations: started from the tasks pages' buttons (console/tasks.py), not the form above.
TASK_KINDS = ("tasks.retry", "tasks.retry_failed", "tasks.cancel", "tasks.purge", "tasks.replay",
              "tasks.discard", "tasks.workflow_cancel")  # fmt: skip


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _number(form: dict[str, str], name: str, default: int) -> int:
    """A whole number typed in the form; "abc" (or "²", which isdigit() accepts) is refused
    naming the field, as the API refuses it."""
    text = form.get(name, "").strip() or str(default)
    if not (len(text) <= 9 and text.isascii() and text.lstrip("-").isdigit()):
        raise Rejected.field(
            f"{name} must be a whole number, not {text!r}", name, "not a number", kind="form"
        )
    return int(text)


def _params(kind: str, form: dict[str, str]) -> dict:
    """The action's parameters from the form, as the API would take them (and checked as
    it checks them, before the preview: create_action checks them again)."""
    params = _form_params(kind, form)
    plans.check_params(kind, params)
    return params


def _form_params(kind: str, form: dict[str, str]) -> dict:
    if kind == "cache.invalidate":
        params = {"namespace": form.get("namespace") or "default", "tags": _split(form.get("tags", "")),
                  "keys": _split(form.get("keys", ""))}  # fmt: skip
        if form.get("prefix"):
            params["prefix"] = form["prefix"]
        if not (params["tags"] or params["keys"] or form.get("prefix")):
            raise Rejected("give tags, keys or a prefix to invalidate")
        return params
    if kind == "failover":
        return {"force": form.get("force") == "on"}
    if kind == "scale":
        return {"op": form.get("op", "grow"), "n": _number(form, "n", 1),
                "min": _number(form, "min", 1), "max": _number(form, "max", 4)}  # fmt: skip
    if kind == "drain":
        return {"backend": form.get("backend", ""), "server": form.get("server", ""),
                "state": form.get("state", "drain")}  # fmt: skip
    if kind in TASK_KINDS:
        return _task_params(kind, form)
    raise Rejected.field(
        f"unknown action kind {kind!r}; the console offers {', '.join(KINDS)}",
        "kind",
        "unknown kind",
        kind="form",
    )


def _task_params(kind: str, form: dict[str, str]) -> dict:
    """A task operation's parameters from a tasks page's hidden fields (plans checks them)."""
    if kind == "tasks.cancel":
        return {"task_id": form.get("task_id", ""), "terminate": form.get("terminate") == "on",
                "signal": form.get("signal") or "SIGTERM"}  # fmt: skip
    if kind == "tasks.replay" and form.get("name"):  # every dead letter of a name
        return {"name": form["name"]}
    if kind in ("tasks.replay", "tasks.discard"):
        return {"task_ids": _split(form.get("task_ids", ""))}
    fields = {"tasks.retry": ("task_id",), "tasks.retry_failed": ("name", "since"), "tasks.purge": ("queue",),
              "tasks.workflow_cancel": ("workflow_id",)}[kind]  # fmt: skip
    return {name: form.get(name, "") for name in fields}


def _plan(session: Session, kind: str, target: str, params: dict) -> list[str]:
    """What will happen, in words, from the catalog as it is now (a task operation: from
    what the control plane knows of the task, which carries it out itself)."""
    if kind in TASK_KINDS:
        return operations.describe(session, kind, params)
    services = {s["name"]: s for s in describe(session)}
    service = services.get(target)
    if service is None:
        return [f"Nothing: {target!r} is not in the catalog, so no agent would carry it out."]
    watched = [i for i in service["instances"] if i["agent"]]
    if kind == "cache.invalidate":
        what = f"the tag versions of {', '.join(params['tags']) or 'no tag'}"
        if params.get("prefix"):
            what += f" and the prefix {params['prefix']!r}"
        keys = ", ".join(params["keys"]) or "(none)"
        steps = [
            f"Bump {what} in namespace {params['namespace']!r}, and delete keys {keys}.",
            "Every process using the cache drops its in-process copies at once (broadcast).",
        ]
    elif kind == "failover":
        guard = (
            "Fail over even if the primary is up."
            if params["force"]
            else "Refuse unless the primary is critical."
        )
        steps = [
            guard,
            "Promote the healthy replica with the highest replication offset, then repoint the others.",
        ]
    elif kind == "scale":
        steps = [f"{params['op'].capitalize()} the worker pool by {params['n']}, "
                 f"within {params['min']}..{params['max']} processes."]  # fmt: skip
    else:
        steps = [f"Set {params['backend']}/{params['server']} to {params['state'].upper()} in HAProxy."]
    agents = sorted({i["agent"] for i in watched})
    steps.append(
        f"Carried out by agent(s) {', '.join(agents)}." if agents else "No agent watches it: it fails."
    )
    return steps


@router.get("/actions")
def actions_page(
    request: Request, role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    rows = session.scalars(
        select(Action).where(Action.parent_id.is_(None)).order_by(Action.created_at.desc()).limit(100)
    ).all()
    services = [s["name"] for s in describe(session)]
    return render(request, "actions.html", {"actions": rows, "kinds": KINDS, "services": services,
                                             "can_act": role in ("operator", "admin")})  # fmt: skip


async def _submitted(request: Request) -> tuple[dict[str, str], str, str, dict]:
    """(form, kind, target, params) of a trigger form, its CSRF token checked."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    check_csrf(request, form.get("csrf", ""))
    kind, target = form.get("kind", ""), form.get("target", "")
    return form, kind, target, _params(kind, form)


@router.post("/actions/preview")
async def preview(
    request: Request, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, target, params = await _submitted(request)
    # The key makes a confirmation posted twice (a double click, the back button) one action.
    form["idempotency_key"] = f"console-{uuid.uuid4().hex}"
    # Queries run off the event loop: one waiting on the store must not stall other requests.
    steps = await asyncio.to_thread(_plan, session, kind, target, params)
    context = {"kind": kind, "target": target, "params": params, "form": form, "steps": steps}
    return render(request, "action_confirm.html", context)


@router.post("/actions/confirm")
async def confirm(
    request: Request, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, target, params = await _submitted(request)
    wanted = ActionRequest(
        kind=kind, target=target, params=params, reason=form.get("reason") or "from the console",
        idempotency_key=form.get("idempotency_key") or None,
        timeout_s=request.app.state.settings.control.action_timeout_s,
    )  # fmt: skip

    def create() -> uuid.UUID:
        action, _created = create_action(
            session, wanted, actor=actor(request), now=utcnow(), client=client_address(request)
        )
        return action.id

    action_id = await asyncio.to_thread(create)
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


@router.get("/actions/{action_id}")
def action_page(
    request: Request,
    action_id: uuid.UUID,
    _role: str = Depends(require_role("viewer")),
    session: Session = DB_SESSION,
) -> Response:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    context = {
        "action": action,
        "audit": lifecycle.audit(session, action_id),
        "steps": lifecycle.children(session, action),
        "evaluations": session.scalars(
            select(RuleEvaluation).where(RuleEvaluation.action_id == action_id)
        ).all(),
        "finished": action.state in lifecycle.FINISHED,
    }
    return render(request, "action.html", context, block="live")
