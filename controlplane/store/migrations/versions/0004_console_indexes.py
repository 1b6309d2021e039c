"""Indexes the console's reads need at scale: roll-ups by metric type and time (a tile's
sparkline reads one metric's last hour across every service, which the primary key, led
by metric_type then service_name, can only answer by reading all of that metric's
buckets), and events by type and time (open alerts, the events page's type filter).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 19:15:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_rollups_1m_type_bucket", "metric_rollups_1m", ["metric_type", "bucket"]),
    ("ix_rollups_1h_type_bucket", "metric_rollups_1h", ["metric_type", "bucket"]),
    ("ix_events_type_time", "infrastructure_events", ["event_type", "timestamp"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)
