"""Initial schema: the seed's three public tables and the control plane's own.

On PostgreSQL, infrastructure_metrics and infrastructure_events are range-partitioned
by day (the partition loop creates and drops the daily partitions), with GIN indexes
on tags/details and a full-text index over event details.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
PARTITIONED = {"postgresql_partition_by": 'RANGE ("timestamp")'}

PG_ONLY = [
    "CREATE INDEX ix_pg_metrics_tags ON infrastructure_metrics USING gin (tags jsonb_path_ops)",
    "CREATE INDEX ix_pg_events_details ON infrastructure_events USING gin (details jsonb_path_ops)",
    "CREATE INDEX ix_pg_events_fts ON infrastructure_events "
    "USING gin (jsonb_to_tsvector('simple'::regconfig, details, '[\"string\"]'))",
    "CREATE INDEX ix_pg_rollups_1m_tags ON metric_rollups_1m USING gin (tags jsonb_path_ops)",
    "CREATE INDEX ix_pg_rollups_1h_tags ON metric_rollups_1h USING gin (tags jsonb_path_ops)",
]


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("revoked", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("name", name=op.f("uq_agents_name")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_agents_token_digest")),
    )
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("alertname", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("labels", JSONDoc, nullable=True),
        sa.Column("annotations", JSONDoc, nullable=True),
        sa.Column("starts_at", sa.DateTime(), nullable=True),
        sa.Column("ends_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_alerts")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_api_tokens_token_digest")),
    )
    op.create_table(
        "catalog_services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("tags", JSONDoc, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_services")),
        sa.UniqueConstraint("name", name=op.f("uq_catalog_services_name")),
    )
    op.create_table(
        "infrastructure_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("service_name", sa.String(length=50), nullable=False),
        sa.Column("details", JSONDoc, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id", "timestamp", name=op.f("pk_infrastructure_events")),
        **PARTITIONED,
    )
    with op.batch_alter_table("infrastructure_events", schema=None) as batch_op:
        batch_op.create_index("ix_events_service_time", ["service_name", "timestamp"], unique=False)

    op.create_table(
        "infrastructure_metrics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("metric_type", sa.String(length=50), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("service_name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("tags", JSONDoc, nullable=True),
        sa.PrimaryKeyConstraint("id", "timestamp", name=op.f("pk_infrastructure_metrics")),
        **PARTITIONED,
    )
    with op.batch_alter_table("infrastructure_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_metrics_type_service_time",
            ["metric_type", "service_name", "timestamp"],
            unique=False,
        )

    op.create_table(
        "infrastructure_settings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("setting_type", sa.String(length=50), nullable=False),
        sa.Column("value", JSONDoc, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_infrastructure_settings")),
        sa.UniqueConstraint("setting_type", name=op.f("uq_infrastructure_settings_setting_type")),
    )
    op.create_table(
        "ingest_batches",
        sa.Column("batch_id", sa.String(length=100), nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("metrics", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_ingest_batches")),
    )
    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_batches_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "metric_rollups_1h",
        sa.Column("metric_type", sa.String(length=50), nullable=False),
        sa.Column("service_name", sa.String(length=50), nullable=False),
        sa.Column("series_key", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("tags", JSONDoc, nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "metric_type", "service_name", "series_key", "bucket", name=op.f("pk_metric_rollups_1h")
        ),
    )
    with op.batch_alter_table("metric_rollups_1h", schema=None) as batch_op:
        batch_op.create_index("ix_rollups_1h_bucket", ["bucket"], unique=False)

    op.create_table(
        "metric_rollups_1m",
        sa.Column("metric_type", sa.String(length=50), nullable=False),
        sa.Column("service_name", sa.String(length=50), nullable=False),
        sa.Column("series_key", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("tags", JSONDoc, nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "metric_type", "service_name", "series_key", "bucket", name=op.f("pk_metric_rollups_1m")
        ),
    )
    with op.batch_alter_table("metric_rollups_1m", schema=None) as batch_op:
        batch_op.create_index("ix_rollups_1m_bucket", ["bucket"], unique=False)

    op.create_table(
        "settings_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("setting_type", sa.String(length=50), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("value", JSONDoc, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings_history")),
        sa.UniqueConstraint(
            "setting_type", "version", name=op.f("uq_settings_history_setting_type_version")
        ),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("params", JSONDoc, nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("result", JSONDoc, nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_actions_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_actions_idempotency_key")),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index("ix_actions_state", ["state"], unique=False)

    op.create_table(
        "catalog_instances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=True),
        sa.Column("health", sa.String(length=20), nullable=False),
        sa.Column("tags", JSONDoc, nullable=True),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_catalog_instances_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["catalog_services.id"],
            name=op.f("fk_catalog_instances_service_id_catalog_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_instances")),
        sa.UniqueConstraint(
            "service_id", "address", name=op.f("uq_catalog_instances_service_id_address")
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        for ddl in PG_ONLY:
            op.execute(ddl)


def downgrade() -> None:
    op.drop_table("catalog_instances")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_state")

    op.drop_table("actions")
    op.drop_table("users")
    op.drop_table("settings_history")
    with op.batch_alter_table("metric_rollups_1m", schema=None) as batch_op:
        batch_op.drop_index("ix_rollups_1m_bucket")

    op.drop_table("metric_rollups_1m")
    with op.batch_alter_table("metric_rollups_1h", schema=None) as batch_op:
        batch_op.drop_index("ix_rollups_1h_bucket")

    op.drop_table("metric_rollups_1h")
    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_batches_received_at"))

    op.drop_table("ingest_batches")
    op.drop_table("infrastructure_settings")
    with op.batch_alter_table("infrastructure_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_type_service_time")

    op.drop_table("infrastructure_metrics")
    with op.batch_alter_table("infrastructure_events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_service_time")

    op.drop_table("infrastructure_events")
    op.drop_table("catalog_services")
    op.drop_table("api_tokens")
    op.drop_table("alerts")
    op.drop_table("agents")
