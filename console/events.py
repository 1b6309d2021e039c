"""The events page: filters, full-text search and keyset pages over the store's events,
read exactly as GET /api/v1/events reads them (controlplane/store/events.py), so the
console and the API agree. While the page shows the newest events it is live: every
ingested event re-renders the list with the same filters (console/live.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from jinja2_fragments import render_block
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.live import ws_url
from console.render import render, templates
from console.session import require_role
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.ops.queries import event_query, parse_time
from controlplane.store.events import EventQuery, list_events
from controlplane.store.models import InfrastructureEvent
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)

PAGE_SIZE, MAX_PAGE = 50, 500  # rows on one page: the API allows more, a page shows at most this
RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
          "24h": timedelta(days=1), "7d": timedelta(days=7)}  # fmt: skip
FILTERS = ("service_name", "event_type", "status", "q", "cursor", "since", "until", "last", "limit")
STATUSES = ("passing", "warning", "critical", "firing", "resolved", "succeeded", "failed")


def parse(params: Mapping[str, str], now: datetime) -> tuple[EventQuery, dict[str, str]]:
    """(the store query, the filters as given) from the page's query string: its relative
    range and page size made into the API's query, then checked by the API's use case."""
    given = {k: params[k].strip() for k in FILTERS if params.get(k, "").strip()}
    text = given.get("limit", str(PAGE_SIZE))
    limit = int(text) if len(text) <= 5 and text.isascii() and text.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE:
        raise Rejected.field(f"limit must be a whole number from 1 to {MAX_PAGE}", "limit", "range")
    if given.get("last") and given["last"] not in RANGES:
        raise Rejected.field(f"last must be one of {', '.join(RANGES)}", "last", "invalid")
    since = parse_time("since", given["since"]) if "since" in given else None
    until = parse_time("until", given["until"]) if "until" in given else None
    if "last" in given:  # a relative range and an explicit since both bound it: the later wins
        since = max(filter(None, (since, now - RANGES[given["last"]])))
    query = event_query(service_name=given.get("service_name"), event_type=given.get("event_type"),
                        status=given.get("status"), since=since, until=until, q=given.get("q"), limit=limit,
                        cursor=given.get("cursor"))  # fmt: skip
    return query, {k: v for k, v in given.items() if k != "cursor"}


def summary(details: dict | None, width: int = 140) -> str:
    """One line about an event: its message if it has one, else its scalar fields."""
    details = details or {}
    for key in ("message", "summary", "description", "alertname", "reason"):
        if isinstance(details.get(key), str) and details[key].strip():
            text = details[key].strip()
            break
    else:
        text = ", ".join(f"{k}={v}" for k, v in details.items()
                         if k != "trace_id" and isinstance(v, (str, int, float, bool)))  # fmt: skip
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(event: InfrastructureEvent) -> dict:
    details = event.details or {}
    trace = details.get("trace_id")
    return {"event": event, "summary": summary(details),
            "trace_id": trace if isinstance(trace, str) else None,
            "json": json.dumps(details, indent=2, sort_keys=True, default=str)}  # fmt: skip


def listing(session: Session, query: EventQuery, filters: dict[str, str]) -> dict:
    """The list block's context: the rows, and links to older pages and back to the newest."""
    rows, next_cursor = list_events(session, query)
    return {
        "rows": [_row(e) for e in rows],
        "filters": filters,
        "paged": query.cursor is not None,
        "older": "/events?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else None,
        "newest": "/events?" + urlencode(filters),
    }


def _choices(session: Session) -> dict:
    """Service names and event types seen lately, offered in the filter form."""
    e = InfrastructureEvent
    recent = select(e.service_name, e.event_type).order_by(e.timestamp.desc()).limit(1000).subquery()
    pairs = session.execute(select(recent.c.service_name, recent.c.event_type).distinct()).all()
    return {"services": sorted({s for s, _ in pairs}), "types": sorted({t for _, t in pairs})}


def live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    """The tail: the newest events matching the page's filters (a paged view is not live)."""
    try:
        query, filters = parse(params, utcnow())
    except Rejected:
        return {}
    if query.cursor:
        return {}
    with app.state.sessionmaker.begin() as session:
        ctx = listing(session, query, filters)
    return {"events": render_block(templates.env, "events.html", "events", ctx)}


@router.get("/events")
def events_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    params = dict(request.query_params)
    base = {"form": params, "ranges": RANGES, "statuses": STATUSES} | _choices(session)
    try:
        query, filters = parse(params, utcnow())
        ctx = listing(session, query, filters)
    except Rejected as exc:
        context = base | {"error": str(exc), "rows": None, "live": None}
        return render(request, "events.html", context, status=status_of(exc))
    live = None if query.cursor else ws_url("events", **filters)
    return render(request, "events.html", base | ctx | {"error": None, "live": live})
