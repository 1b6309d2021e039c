"""The seed's three public tables (DESIGN.md §3).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "infrastructure_events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("service_name", sa.String(50), nullable=False),
        sa.Column("details", JSONDoc),
        sa.Column("status", sa.String(20)),
    )
    op.create_table(
        "infrastructure_metrics",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("metric_type", sa.String(50), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("service_name", sa.String(50), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("tags", JSONDoc),
    )
    op.create_table(
        "infrastructure_settings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("setting_type", sa.String(50), nullable=False),
        sa.Column("value", JSONDoc),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_events_service_time", "infrastructure_events", ["service_name", "timestamp"]
    )
    op.create_index(
        "ix_metrics_type_service_time",
        "infrastructure_metrics",
        ["metric_type", "service_name", "timestamp"],
    )
    op.create_index("ix_settings_type", "infrastructure_settings", ["setting_type"], unique=True)


def downgrade() -> None:
    op.drop_table("infrastructure_settings")
    op.drop_table("infrastructure_metrics")
    op.drop_table("infrastructure_events")
