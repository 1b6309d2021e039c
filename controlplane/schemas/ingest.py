"""What an agent sends to POST /api/v1/ingest and what it gets back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:\-]*$"


def utc_naive(value: datetime) -> datetime:
    """Timestamps are stored as naive UTC (the seed's TIMESTAMP columns). ValueError when
    the UTC time falls outside years 1..9999 (9999-12-31T23:59:59-23:59 is a valid
    RFC 3339 string whose UTC time is in year 10000), so every caller refuses it as bad
    input instead of failing on an OverflowError."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside years 1 to 9999 once converted to UTC") from None


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL: refuse it here, naming the field, rather
    # than as a 500 from the store.
    if "\x00" in value:
        raise ValueError("NUL bytes cannot be stored")
    return value


Timestamp = Annotated[datetime, AfterValidator(utc_naive)]
Text = Annotated[str, AfterValidator(_no_nul)]
# Out: stored naive UTC values, answered as RFC 3339 with their zone.
UtcDatetime = Annotated[datetime, AfterValidator(lambda v: v if v.tzinfo else v.replace(tzinfo=UTC))]
Name = Annotated[str, Field(min_length=1, max_length=50, pattern=NAME_PATTERN)]


class MetricPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric_type: Name = Field(description="Metric name, Prometheus style: coreplane_<what>_<unit>.")
    service_name: Name = Field(description="Backend (catalog service) the point is about.")
    timestamp: Timestamp = Field(description="When it was measured (RFC 3339; naive = UTC).")
    # Strict: a JSON number only; "1.5" or true is a mistake in the agent, not a value.
    value: Annotated[float, Strict()] = Field(description="A finite JSON number (not a string or boolean).")
    tags: dict[str, str] = Field(default_factory=dict, description="Labels of the series.")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_type: Name
    service_name: Name
    timestamp: Timestamp
    status: str | None = Field(
        None,
        max_length=20,
        pattern=r"^[A-Za-z0-9_.\-]*$",
        description="passing, warning, critical, ...",
    )
    details: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", description="OpenTelemetry trace id (32 hex digits)."
    )


class HealthDetails(BaseModel):
    """The fields of a health event's details the catalog reads, with the catalog's
    column limits; the other fields are kept as sent."""

    model_config = ConfigDict(extra="allow")

    instance: Text | None = Field(None, min_length=1, max_length=255, description="host:port")
    type: Text | None = Field(None, min_length=1, max_length=30, description="redis, postgres, ...")
    role: Text | None = Field(None, max_length=30, description="primary, replica, ...")
    message: Text | None = Field(None, description="Any length: the whole details are capped.")


class IngestBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._:\-]+$",
        description="Chosen by the agent; sending the same batch_id again stores nothing new.",
    )
    agent: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._\-]+$",
        description="The sending agent's name.",
    )
    metrics: list[MetricPointIn] = Field(default_factory=list)
    events: list[EventIn] = Field(default_factory=list)


class IngestResult(BaseModel):
    batch_id: str
    duplicate: bool = Field(description="True when this batch_id was already stored.")
    metrics: int = Field(description="Metric points stored by this request.")
    events: int = Field(description="Events stored by this request.")


class ItemError(BaseModel):
    kind: str = Field(description="metrics, events, or batch")
    index: int | None = Field(None, description="Position of the item in its list.")
    field: str | None = None
    reason: str
    code: str | None = Field(None, description="too_many_items, timestamp, tags, details, ...")
