"""Topology and queue pages: /messaging/topology (the definition's diff against the broker,
and apply) and /messaging/queues/{name} (a queue's settings, depth and consumers; delete,
move its messages, set or delete a policy; purge is the dead letters' page's).

Viewers read. Every form goes to this module's preview, which says in words what will
happen (operations.describe, and for an apply the diff itself) before the operator confirms
and the action is made: RBAC, CSRF, idempotency and the audit trail are the actions' own."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from console.render import actor, client_address, render
from console.session import check_csrf, require_role
from controlplane.actions import plans
from controlplane.clock import utcnow
from controlplane.errors import Conflict, Rejected, Unavailable
from controlplane.messaging import operations, topology
from controlplane.messaging.connection import MessagingRuntime
from controlplane.messaging.definition import expand
from controlplane.messaging.management import Management
from controlplane.ops.actions import ActionRequest, create_action
from controlplane.web import DB_SESSION

router = APIRouter(include_in_schema=False)
log = logging.getLogger("coreplane.console.messaging")
MAX_FIELD = 65536  # a JSON field of a form (a queue, its bindings, a policy's definition)


def _runtime(request: Request) -> MessagingRuntime | None:
    return getattr(request.app.state, "messaging", None)


def _can_act(role: str | None) -> bool:
    return role in ("operator", "admin")


def _read(what: str, call: Any, *args: Any) -> tuple[Any, str | None]:
    """(``call``'s answer, None), or (None, why) when the broker or its API did not answer."""
    try:
        return call(*args), None
    except (Unavailable, Conflict) as exc:
        log.warning("the messaging page could not read %s: %s", what, exc)
        return None, f"Could not read {what}: {exc}"


# -- the topology ------------------------------------------------------------------------


def _broker_queues(runtime: MessagingRuntime) -> list[dict[str, Any]]:
    columns = ["name", "type", "messages", "consumers", "policy"]
    with Management.of(runtime) as api:
        return sorted(api.queues(columns), key=lambda q: q["name"])


@router.get("/messaging/topology")
def topology_page(request: Request, role: str = Depends(require_role("viewer"))) -> Response:
    runtime = _runtime(request)
    context: dict[str, Any] = {"configured": runtime is not None, "can_act": _can_act(role)}
    if runtime is not None:
        diff, error = _read("the broker's topology", topology.plan, runtime, runtime.definition)
        queues, queues_error = _read("the queues", _broker_queues, runtime)
        expanded = expand(runtime.definition, runtime.settings.messaging.retry)
        context |= {"diff": diff, "error": error or queues_error, "queues": queues, "expanded": expanded}
    return render(request, "messaging/topology.html", context)


# -- one queue ---------------------------------------------------------------------------


def _queue_view(runtime: MessagingRuntime, name: str) -> dict[str, Any]:
    with Management.of(runtime) as api:
        queue = api.queue(name)  # NotFound: the console's 404 page
        policies = api.policies()
        others = [q["name"] for q in api.queues(["name"]) if q["name"] != name]
    return {"queue": queue, "policies": sorted(policies, key=lambda p: p["name"]), "others": sorted(others)}


@router.get("/messaging/queues/{name}")
def queue_page(request: Request, name: str, role: str = Depends(require_role("viewer"))) -> Response:
    runtime = _runtime(request)
    context: dict[str, Any] = {"name": name, "configured": runtime is not None, "can_act": _can_act(role)}
    if runtime is None:
        return render(request, "messaging/queue.html", context)
    view, error = _read(f"queue {name!r}", _queue_view, runtime, name)
    # The policy form's pattern starts as this queue alone.
    extra = {"error": error, "declared": runtime.definition.queue(name), "pattern": f"^{re.escape(name)}$"}
    return render(request, "messaging/queue.html", context | (view or {}) | extra)


# -- preview and confirm -----------------------------------------------------------------


def _json_field(form: dict[str, str], name: str, default: Any) -> Any:
    text = form.get(name, "").strip()
    if not text:
        return default
    if len(text) > MAX_FIELD:
        raise Rejected.field(f"{name} is over {MAX_FIELD} characters", name, "too long", kind="form")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Rejected.field(f"{name} is not JSON: {exc}", name, "not JSON", kind="form") from None


def _whole(form: dict[str, str], name: str, default: int) -> int:
    text = form.get(name, "").strip() or str(default)
    if not (len(text) <= 9 and text.isascii() and text.isdigit()):
        raise Rejected.field(
            f"{name} must be a whole number, not {text!r}", name, "not a number", kind="form"
        )
    return int(text)


def form_params(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """An operation's parameters from a page's form, as the API would take them."""
    if kind == "mq.apply":
        return {"prune": form.get("prune") == "on", "force": form.get("force") == "on"}
    if kind == "mq.declare":
        return {"queue": _json_field(form, "queue", {}), "bindings": _json_field(form, "bindings", [])}
    if kind == "mq.delete":
        return {"queue": form.get("queue", ""), "if_empty": form.get("if_empty") == "on"}
    if kind == "mq.move":
        return {"source": form.get("source", ""), "destination": form.get("destination", ""),
                "limit": _whole(form, "limit", 100)}  # fmt: skip
    if kind == "mq.policy":
        return {
            "name": form.get("name", ""),
            "pattern": form.get("pattern", ""),
            "definition": _json_field(form, "definition", {}),
            "apply_to": form.get("apply_to") or "queues",
            "priority": _whole(form, "priority", 0),
        }
    if kind == "mq.policy_delete":
        return {"name": form.get("name", "")}
    raise Rejected.field(f"unknown operation {kind!r}", "kind", "unknown kind", kind="form")


async def _submitted(request: Request) -> tuple[dict[str, str], str, dict[str, Any]]:
    """(form, kind, params) of a posted operation form, its CSRF token checked and its
    params checked as the API checks them."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    check_csrf(request, form.get("csrf", ""))
    kind = form.get("kind", "")
    params = form_params(kind, form)
    plans.check_params(kind, params)
    return form, kind, params


def _diff_lines(found: topology.TopologyDiff, prune: bool) -> list[str]:
    lines = [f"Add {d.kind} {d.name}" for d in found.add]
    lines += [
        f"Recreate {c.wanted.kind} {c.wanted.name} ({', '.join(c.differences)} changed)" for c in found.change
    ]
    verb = "Remove" if prune else "Leave (no prune)"
    lines += [f"{verb} {d.kind} {d.name}" for d in found.remove]
    return lines or ["Nothing: the broker already holds the definition"]


def _steps(session: Session, runtime: MessagingRuntime | None, kind: str, params: dict) -> list[str]:
    steps = operations.describe(session, kind, params)
    if kind == "mq.apply" and runtime is not None:
        found, error = _read("the broker's topology", topology.plan, runtime, runtime.definition)
        steps += [error] if error else _diff_lines(found, bool(params.get("prune")))
    return steps


@router.post("/messaging/operations/preview")
async def preview(
    request: Request, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, params = await _submitted(request)
    # The key makes a confirmation posted twice (a double click, the back button) one action.
    form["idempotency_key"] = f"console-{uuid.uuid4().hex}"
    steps = await asyncio.to_thread(_steps, session, _runtime(request), kind, params)
    back = form.get("back", "")
    back = back if back.startswith("/messaging/") else "/messaging/topology"  # a link of ours only
    context = {"kind": kind, "target": operations.TARGET, "params": params, "form": form, "steps": steps,
               "back": back, "action_url": "/messaging/operations/confirm"}  # fmt: skip
    return render(request, "action_confirm.html", context)


@router.post("/messaging/operations/confirm")
async def confirm(
    request: Request, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, params = await _submitted(request)
    wanted = ActionRequest(
        kind=kind, target=operations.TARGET, params=params, reason=form.get("reason") or "from the console",
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
