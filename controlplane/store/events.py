"""Event queries: filters, time range, full-text search over details, keyset pages."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session

from controlplane.errors import Rejected
from controlplane.store.models import InfrastructureEvent


@dataclass
class EventQuery:
    service_name: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    limit: int = 100
    cursor: str | None = None


def encode_cursor(ts: datetime, event_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{event_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        ts, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(ts), uuid.UUID(event_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected.field(
            f"cursor is not one this API returned: {exc}",
            "cursor",
            "malformed",
        ) from None


def list_events(session: Session, query: EventQuery) -> tuple[list[InfrastructureEvent], str | None]:
    """Newest first; returns the page and the cursor of the next one (None at the end)."""
    e = InfrastructureEvent
    where = []
    if query.service_name:
        where.append(e.service_name == query.service_name)
    if query.event_type:
        where.append(e.event_type == query.event_type)
    if query.status:
        where.append(e.status == query.status)
    if query.since:
        where.append(e.timestamp >= query.since)
    if query.until:
        where.append(e.timestamp < query.until)
    if query.q:
        if session.get_bind().dialect.name == "postgresql":
            document = func.jsonb_to_tsvector(
                literal_column("'simple'::regconfig"),
                e.details,
                literal_column("'[\"string\"]'::jsonb"),
            )
            where.append(
                document.op("@@")(func.websearch_to_tsquery(literal_column("'simple'::regconfig"), query.q))
            )
        else:
            terms = [t for t in query.q.split() if t]
            # autoescape: a term is literal text, so "50%" finds "50%", not "50" and anything.
            where.extend(
                func.lower(cast(e.details, String)).contains(t.lower(), autoescape=True) for t in terms
            )
    if query.cursor:
        ts, event_id = decode_cursor(query.cursor)
        where.append(or_(e.timestamp < ts, and_(e.timestamp == ts, e.id < event_id)))
    stmt = select(e).where(*where).order_by(e.timestamp.desc(), e.id.desc()).limit(query.limit + 1)
    rows = list(session.scalars(stmt))
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        return rows[: query.limit], encode_cursor(last.timestamp, last.id)
    return rows, None
