"""Tables. The three ``infrastructure_*`` tables are a public contract (DESIGN.md §3):
Grafana's Postgres data source queries them directly, so names and columns stay put."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on Postgres (GIN-indexable), plain JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class InfrastructureEvent(Base):
    __tablename__ = "infrastructure_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(50))
    timestamp: Mapped[datetime] = mapped_column(DateTime)
    service_name: Mapped[str] = mapped_column(String(50))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    status: Mapped[str | None] = mapped_column(String(20))


class InfrastructureMetric(Base):
    __tablename__ = "infrastructure_metrics"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    metric_type: Mapped[str] = mapped_column(String(50))
    timestamp: Mapped[datetime] = mapped_column(DateTime)
    service_name: Mapped[str] = mapped_column(String(50))
    value: Mapped[float] = mapped_column(Float)
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)


class InfrastructureSetting(Base):
    __tablename__ = "infrastructure_settings"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    setting_type: Mapped[str] = mapped_column(String(50))
    value: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
