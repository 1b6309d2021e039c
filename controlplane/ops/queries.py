"""Input of the metric and event queries, parsed and checked once for GET /api/v1/metrics
and /api/v1/events and for the console's explore and events pages, so both refuse the same
input with the same reason. Raises Rejected naming the field; touches no store."""

from __future__ import annotations

from datetime import datetime, timedelta

from controlplane.errors import Rejected
from controlplane.schemas.ingest import utc_naive
from controlplane.store.events import EventQuery, decode_cursor
from controlplane.store.queries import AGGREGATES, SeriesQuery, bucket_count, pick_source

MAX_TAG_FILTERS = 20  # a series has at most IngestSettings.max_tags tags; 20 is plenty
MAX_BUCKETS = 11_000  # per series: what one answer may hold
MAX_STEP_S = 31 * 86400
DEFAULT_BUCKETS = 300  # a query without a step gets about this many buckets
SERIES_SOURCES = ("auto", "raw", "1m", "1h")
MAX_EVENTS = 1000  # events in one page
# Column widths of the store: longer filters cannot match anything.
MAX_LENGTHS = {"metric_type": 50, "service_name": 50, "group_by": 64, "event_type": 50, "status": 20,
               "q": 200, "cursor": 200}  # fmt: skip


def parse_time(field: str, text: str) -> datetime:
    """Naive UTC from an ISO 8601 / RFC 3339 string (naive = UTC); Rejected naming the
    field when it is not a time or its UTC time falls outside years 1..9999."""
    try:
        return utc_naive(datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        raise Rejected.field(
            f"{field} {text!r} is not a time ({exc}): "
            "write it like 2025-01-31T09:30:00Z (RFC 3339; no zone = UTC)",
            field,
            "not a time",
        ) from None


def parse_tag_filters(items: list[str]) -> dict[str, str]:
    """key=value filters; Rejected past MAX_TAG_FILTERS or when one is not key=value."""
    if len(items) > MAX_TAG_FILTERS:
        raise Rejected.field(
            f"{len(items)} tag filters, more than {MAX_TAG_FILTERS}: narrow the query", "tags", "too many"
        )
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Rejected.field(
                f"tag filter {item!r} must look like key=value", "tags", "expected key=value"
            )
        parsed[key] = value
    return parsed


def _check_text(**given: str | None) -> None:
    """Rejected naming the first filter longer than its column, or holding a NUL byte."""
    for name, value in given.items():
        if value is not None and (len(value) > MAX_LENGTHS[name] or "\x00" in value):
            why = f"{name} is too long (at most {MAX_LENGTHS[name]} characters) or holds a NUL byte"
            raise Rejected.field(why, name, "invalid")


def series_query(
    *,
    metric_type: str,
    start: datetime,
    end: datetime,
    step_s: int | None = None,
    agg: str = "avg",
    service_name: str | None = None,
    tags: list[str] | None = None,
    group_by: str | None = None,
    source: str = "auto",
    rollup_1m_days: int,
) -> tuple[SeriesQuery, str]:
    """(the store query, the source it reads: raw, 1m or 1h), checked; ``step_s`` None
    gives about DEFAULT_BUCKETS buckets over the range."""
    _check_text(metric_type=metric_type, service_name=service_name, group_by=group_by)
    if not metric_type:
        raise Rejected.field("metric_type is required", "metric_type", "missing")
    if agg not in AGGREGATES:
        raise Rejected.field(
            f"unknown aggregation {agg!r}: use one of {', '.join(AGGREGATES)}", "agg", "unknown"
        )
    if source not in SERIES_SOURCES:
        raise Rejected.field(
            f"unknown source {source!r}: use one of {', '.join(SERIES_SOURCES)}", "source", "unknown"
        )
    if start >= end:
        raise Rejected.field("start must be before end", "start", "not before end")
    step = max(1, int((end - start).total_seconds() // DEFAULT_BUCKETS)) if step_s is None else step_s
    if not 1 <= step <= MAX_STEP_S:
        raise Rejected.field(f"step must be between 1 and {MAX_STEP_S} seconds", "step", "out of range")
    filters = parse_tag_filters(tags or [])
    query = SeriesQuery(metric_type=metric_type, start=start, end=end, step_s=step, agg=agg,
                        service_name=service_name, tags=filters, group_by=group_by)  # fmt: skip
    if bucket_count(query) > MAX_BUCKETS:
        raise Rejected.field(
            f"{bucket_count(query)} buckets per series, over {MAX_BUCKETS}: raise step or narrow the range",
            "step",
            "too many buckets",
        )
    if source == "auto":
        return query, pick_source(query, oldest_1m=end - timedelta(days=rollup_1m_days))
    if source != "raw" and agg == "p95":
        why = "p95 needs raw points: roll-ups keep count, sum, min and max only"
        raise Rejected.field(why, "source", "p95 on a roll-up")
    return query, source


def event_query(
    *,
    service_name: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> EventQuery:
    """The store's event query, checked: filters within their columns, a page of 1 to
    MAX_EVENTS, since before until, and a cursor this API made (refused before any query)."""
    _check_text(service_name=service_name, event_type=event_type, status=status, q=q, cursor=cursor)
    if not 1 <= limit <= MAX_EVENTS:
        raise Rejected.field(f"limit must be a whole number from 1 to {MAX_EVENTS}", "limit", "range")
    if since and until and since >= until:
        raise Rejected.field("since must be before until", "since", "range")
    if cursor:
        decode_cursor(cursor)
    return EventQuery(service_name, event_type, status, since, until, q, limit, cursor)
