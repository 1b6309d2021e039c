"""What an agent sends to POST /api/v1/ingest and what it gets back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:\-]*$"


def _utc_naive(value: datetime) -> datetime:
    """Timestamps are stored as naive UTC (the seed's TIMESTAMP columns)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


Timestamp = Annotated[datetime, AfterValidator(_utc_naive)]
# Out: stored naive UTC values, answered as RFC 3339 with their zone.
UtcDatetime = Annotated[datetime, AfterValidator(lambda v: v if v.tzinfo else v.replace(tzinfo=UTC))]
Name = Annotated[str, Field(min_length=1, max_length=50, pattern=NAME_PATTERN)]


class MetricPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric_type: Name = Field(description="Metric name, Prometheus style: coreplane_<what>_<unit>.")
    service_name: Name = Field(description="Backend (catalog service) the point is about.")
    timestamp: Timestamp = Field(description="When it was measured (RFC 3339; naive = UTC).")
    value: float = Field(description="A finite number.")
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
