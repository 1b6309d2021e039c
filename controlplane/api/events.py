"""GET /api/v1/events: filters, time range, full-text search, cursor pages."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from controlplane.api.deps import READ_SESSION, VIEWER
from controlplane.schemas.ingest import Timestamp, UtcDatetime
from controlplane.store.events import EventQuery, list_events

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
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=200),
    session: Session = READ_SESSION,
) -> EventsPage:
    rows, next_cursor = list_events(
        session,
        EventQuery(service_name, event_type, status, since, until, q, limit, cursor),
    )
    return EventsPage(
        events=[EventOut.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=next_cursor,
    )
