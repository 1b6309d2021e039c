"""GET /api/v1/events: filters, time range, full-text search, cursor pages."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from controlplane.api.deps import VIEWER
from controlplane.ops.queries import MAX_EVENTS, event_query
from controlplane.schemas.ingest import Timestamp, UtcDatetime
from controlplane.store.events import list_events
from controlplane.web import READ_SESSION

router = APIRouter(tags=["query"])


class EventOut(BaseModel):
    id: uuid.UUID
    event_type: str
    timestamp: UtcDatetime
    service_name: str
    status: str | None
    details: dict[str, Any] | None


class EventsPage(BaseModel):
    events: list[EventOut]
    next_cursor: str | None


@router.get("/events", response_model=EventsPage, dependencies=[Depends(VIEWER)])
def query_events(
    service_name: str | None = Query(None, max_length=50),
    event_type: str | None = Query(None, max_length=50),
    status: str | None = Query(None, max_length=20),
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    q: str | None = Query(None, max_length=200, description="Full-text search over details"),
    limit: int = Query(100, ge=1, le=MAX_EVENTS),
    cursor: str | None = Query(None, max_length=200),
    session: Session = READ_SESSION,
) -> EventsPage:
    query = event_query(service_name=service_name, event_type=event_type, status=status, since=since,
                        until=until, q=q, limit=limit, cursor=cursor)  # fmt: skip
    rows, next_cursor = list_events(session, query)
    return EventsPage(
        events=[EventOut.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=next_cursor,
    )
