"""The events page: filters, full-text search and keyset pages over the store's events,
read exactly as GET /api/v1/events reads them (controlplane/store/events.py), so the
console and the API agree. While the page shows the newest events it is live: every
ingested event re-renders the list with the same filters (console/live.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from jinja2_fragments import render_block
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.live import ws_url
from console.render import render, templates
from console.session import require_role
from controlplane.api.deps import DB_SESSION
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.ops.queries import parse_time
from controlplane.store.events import EventQuery, decode_cursor, list_events
from controlplane.store.models import InfrastructureEvent

router = APIRouter(include_in_schema=False)

PAGE_SIZE, MAX_PAGE = 50, 500
RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
          "24h": timedelta(days=1), "7d": timedelta(days=7)}  # fmt: skip
# The API's own bounds (controlplane/api/events.py), so a URL valid here is valid there.
MAX_LENGTHS = {"service_name": 50, "event_type": 50, "status": 20, "q": 200, "cursor": 200,
               "since": 40, "until": 40, "last": 5, "limit": 5}  # fmt: skip
STATUSES = ("passing", "warning", "critical", "firing", "resolved", "succeeded", "failed")


def parse(params: Mapping[str, str], now: datetime) -> tuple[EventQuery, dict[str, str]]:
    """(the store query, the filters as given) from the page's query string; raises
    Rejected, naming the field, for anything the API would refuse too."""
    given = {k: params[k].strip() for k in MAX_LENGTHS if params.get(k, "").strip()}
    for name, value in given.items():
        if len(value) > MAX_LENGTHS[name] or "\x00" in value:
            raise Rejected.field(f"{name} is too long or holds a NUL byte", name, "invalid")
    try:
        limit = int(given.get("limit", PAGE_SIZE))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise Rejected.field(f"limit must be a whole number from 1 to {MAX_PAGE}", "limit", "range")
    if given.get("last") and given["last"] not in RANGES:
        raise Rejected.field(f"last must be one of {', '.join(RANGES)}", "last", "invalid")
    since = parse_time("since", given["since"]) if "since" in given else None
    until = parse_time("until", given["until"]) if "until" in given else None
    if "last" in given:  # a relative range and an explicit since both bound it: the later wins
        since = max(filter(None, (since, now - RANGES[given["last"]])))
    if since and until and since >= until:
        raise Rejected.field("since must be before until", "since", "range")
    if "cursor" in given:
        decode_cursor(given["cursor"])  # a malformed cursor is refused before any query
    query = EventQuery(given.get("service_name"), given.get("event_type"), given.get("status"), since,
                       until, given.get("q"), limit, given.get("cursor"))  # fmt: skip
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


def live_blocks(app, params: dict[str, str], role: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
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
        return render(
            request, "events.html", base | {"error": str(exc), "rows": None, "live": None}, status=422
        )
    live = None if query.cursor else ws_url("events", **filters)
    return render(request, "events.html", base | ctx | {"error": None, "live": live})
