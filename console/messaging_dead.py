"""Dead-letter pages: /messaging/dead-letters (filters, pages, live, replay a filtered set)
and /messaging/dead-letters/{id} (headers, body, x-death history, replay, discard); and the
preview of a queue purge (/messaging/queues/{name}/purge, the queue page's form).

Every change goes through a preview that says what will happen, then a confirmation
(operators, CSRF): a replay and a purge become actions an agent carries out, a discard is
done by the control plane at once. The list is live: each commit announcing
notify.MESSAGING (the archiver's, a replay's, a discard's) re-renders its block."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from jinja2_fragments import render_block
from sqlalchemy.orm import Session

from console.live import ws_url
from console.render import actor, client_address, render, templates
from console.session import check_csrf, require_role
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.messaging import dead
from controlplane.ops.actions import ActionRequest, create_action
from controlplane.ops.queries import parse_time
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FILTERS = ("queue", "reason", "state", "q", "since", "before", "before_id")  # before*: a page's cursor
DISCARD = "messaging.discard"  # not an action: the control plane marks the rows itself
KINDS = (dead.REPLAY, DISCARD, dead.PURGE)
HEX_MAX = 4096  # bytes of a binary body shown as hex


def _can_act(role: str | None) -> bool:
    return role in ("operator", "admin")


# -- the list ----------------------------------------------------------------------------


def parse_filters(params: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(list_dead's keyword arguments, the filters as given) from the page's query string."""
    given = {k: params[k].strip() for k in FILTERS if params.get(k, "").strip()}
    state = given.get("state", "dead")
    before = None
    if "before" in given:
        try:
            before_id = uuid.UUID(given.get("before_id", "f" * 32))
        except ValueError:
            raise Rejected.field("before_id must be a dead letter's id", "before_id", "invalid") from None
        before = (parse_time("before", given["before"]), before_id)
    query = {
        "queue": given.get("queue"),
        "reason": given.get("reason"),
        "state": None if state == "any" else state,  # checked by dead.list_dead
        "search": given.get("q"),
        "since": parse_time("since", given["since"]) if "since" in given else None,
        "before": before,
        "limit": PAGE_SIZE,
    }
    return query, {k: v for k, v in given.items() if not k.startswith("before")}


def listing(session: Session, query: dict[str, Any], filters: dict[str, str]) -> dict:
    """The list block's context: the rows, a link to older ones and back to the newest."""
    rows = dead.list_dead(session, **query)
    older = None
    if len(rows) == PAGE_SIZE:
        last = rows[-1]
        older = "/messaging/dead-letters?" + urlencode(
            {**filters, "before": last.dead_at.isoformat(), "before_id": str(last.id)}
        )
    return {"rows": rows, "filters": filters, "paged": query["before"] is not None, "older": older,
            "newest": "/messaging/dead-letters?" + urlencode(filters)}  # fmt: skip


def _replay_filter(filters: dict[str, str]) -> dict[str, str] | None:
    """The "Replay these" form's fields when the list shows one queue's dead letters."""
    if not filters.get("queue") or filters.get("state", "dead") != "dead":
        return None
    return {k: filters[k] for k in ("queue", "reason", "since") if filters.get(k)}


def live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    """The newest dead letters matching the page's filters (an older page is not live)."""
    try:
        query, filters = parse_filters(params)
    except Rejected:
        return {}
    if query["before"] is not None:
        return {}
    with app.state.sessionmaker.begin() as session:
        try:
            ctx = listing(session, query, filters) | {"role": role, "can_act": _can_act(role)}
        except Rejected:
            return {}
    return {"mq-dead-letters": render_block(templates.env, "messaging/dead_letters.html", "rows", ctx)}


@router.get("/messaging/dead-letters")
def dead_letters_page(
    request: Request, role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    params = dict(request.query_params)
    base = {
        "form": params,
        "states": (*dead.STATES, "any"),
        "reasons": dead.REASONS,
        "can_act": _can_act(role),
    }
    try:
        query, filters = parse_filters(params)
        ctx = listing(session, query, filters)
    except Rejected as exc:
        context = base | {"error": str(exc), "rows": None, "live": None}
        return render(request, "messaging/dead_letters.html", context, status=status_of(exc))
    live = None if query["before"] else ws_url("mq-dead", **filters)
    context = base | ctx | {"error": None, "live": live, "replay_filter": _replay_filter(filters)}
    return render(request, "messaging/dead_letters.html", context, block="rows")


# -- one dead letter -----------------------------------------------------------------------


def _body_view(row: Any) -> dict[str, Any]:
    """The kept body as text (UTF-8), else as hex (the first HEX_MAX bytes) and base64."""
    text = dead.body_text(row)
    if text is not None:
        return {"text": text}
    raw = bytes(row.body)
    return {
        "hex": raw[:HEX_MAX].hex(" "),
        "base64": base64.b64encode(raw).decode(),
        "more": len(raw) > HEX_MAX,
    }


@router.get("/messaging/dead-letters/{dead_id}")
def dead_letter_page(
    request: Request,
    dead_id: uuid.UUID,
    role: str = Depends(require_role("viewer")),
    session: Session = DB_SESSION,
) -> Response:
    row = dead.get(session, dead_id)
    context = {"row": row, "body": _body_view(row), "deaths": dead.deaths(row), "can_act": _can_act(role)}
    return render(request, "messaging/dead_letter.html", context)


# -- preview and confirm -------------------------------------------------------------------


def _form_params(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """The operation's parameters from a page's hidden fields, checked as the API checks them."""
    if kind not in KINDS:
        raise Rejected.field(f"unknown operation {kind!r}", "kind", "unknown kind", kind="form")
    if kind == dead.PURGE:
        params: dict[str, Any] = {"queue": form.get("queue", "")}
        dead.check_purge(params)
        return params
    if form.get("ids"):
        params = {"ids": [i.strip() for i in form["ids"].split(",") if i.strip()]}
    else:
        params = {"queue": form.get("queue", "")}
        params |= {k: form[k] for k in ("reason", "since") if form.get(k)}
    dead.check_selection(params)
    return params


async def _submitted(request: Request) -> tuple[dict[str, str], str, dict[str, Any]]:
    form = {k: str(v) for k, v in (await request.form()).items()}
    check_csrf(request, form.get("csrf", ""))
    kind = form.get("kind", "")
    return form, kind, _form_params(kind, form)


def _confirm_page(request: Request, session: Session, kind: str, params: dict, form: dict[str, str],
                  action_url: str) -> Response:  # fmt: skip
    # The key makes a confirmation posted twice (a double click, the back button) one action.
    form = {k: v for k, v in form.items() if k != "csrf"} | {"idempotency_key": f"console-{uuid.uuid4().hex}"}
    context = {"kind": kind, "target": dead.TARGET, "params": params, "form": form, "ask_reason": True,
               "steps": dead.describe(session, kind, params), "action_url": action_url,
               "back": "/messaging/dead-letters"}  # fmt: skip
    return render(request, "action_confirm.html", context)


@router.post("/messaging/dead-letters/preview")
async def preview(
    request: Request, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, params = await _submitted(request)

    def page() -> Response:
        if kind == dead.REPLAY:
            dead.refuse_truncated(session, params)
        return _confirm_page(request, session, kind, params, form, "/messaging/dead-letters/confirm")

    # Queries run off the event loop: one waiting on the store must not stall other requests.
    return await asyncio.to_thread(page)


def _create(request: Request, session: Session, kind: str, params: dict, form: dict[str, str]) -> Response:
    wanted = ActionRequest(
        kind=kind, target=dead.TARGET, params=params, reason=form.get("reason_text") or "from the console",
        idempotency_key=form.get("idempotency_key") or None,
        timeout_s=request.app.state.settings.control.action_timeout_s,
    )  # fmt: skip
    action, _ = create_action(
        session, wanted, actor=actor(request), now=utcnow(), client=client_address(request)
    )
    return RedirectResponse(f"/actions/{action.id}", status_code=303)


@router.post("/messaging/dead-letters/confirm")
async def confirm(
    request: Request, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, params = await _submitted(request)

    def done() -> Response:
        if kind != DISCARD:
            if kind == dead.REPLAY:
                dead.refuse_truncated(session, params)
            return _create(request, session, kind, params, form)
        why = form.get("reason_text") or "from the console"
        ids = dead.discard(session, params, actor=actor(request), reason=why, now=utcnow(),
                           client=client_address(request))  # fmt: skip
        one = f"/messaging/dead-letters/{ids[0]}"
        return RedirectResponse(one if len(ids) == 1 else "/messaging/dead-letters?state=discarded", 303)

    return await asyncio.to_thread(done)


@router.get("/messaging/queues/{name}/purge")
def purge_preview(
    request: Request, name: str, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    params = {"queue": name}
    dead.check_queue_name(name, "name", kind="path")
    form = {"kind": dead.PURGE, "queue": name}
    return _confirm_page(request, session, dead.PURGE, params, form, f"/messaging/queues/{name}/purge")


@router.post("/messaging/queues/{name}/purge")
async def purge_confirm(
    request: Request, name: str, _role: str = Depends(require_role("operator")), session: Session = DB_SESSION
) -> Response:
    form, kind, params = await _submitted(request)
    if kind != dead.PURGE or params["queue"] != name:
        raise Rejected.field("this form purges the queue its address names", "queue", "mismatch", kind="form")
    return await asyncio.to_thread(_create, request, session, kind, params, form)
