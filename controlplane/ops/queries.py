"""Input of the metric and event queries, parsed once for GET /api/v1/metrics and
/api/v1/events and for the console's explore and events pages, so both refuse the same
input with the same reason."""

from __future__ import annotations

from datetime import datetime

from controlplane.errors import Rejected
from controlplane.schemas.ingest import utc_naive

MAX_TAG_FILTERS = 20  # a series has at most IngestSettings.max_tags tags; 20 is plenty


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
