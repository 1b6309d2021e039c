"""Storage: managed buckets (quotas, usage, lifecycle), grants, share links, mirrors and
restore drills.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 07:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "storage_buckets",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("used_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("objects", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_at", sa.DateTime(), nullable=True),
        sa.Column("lifecycle", JSONDoc, nullable=False),
        sa.Column("lifecycle_on_server", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_storage_buckets")),
    )
    op.create_table(
        "storage_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_grants")),
        sa.UniqueConstraint("bucket", "subject", name=op.f("uq_storage_grants_bucket_subject")),
    )
    with op.batch_alter_table("storage_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_storage_grants_bucket"), ["bucket"], unique=False)
    op.create_table(
        "storage_shares",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("version_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("max_downloads", sa.Integer(), nullable=True),
        sa.Column("downloads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_download_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_shares")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_storage_shares_token_digest")),
    )
    with op.batch_alter_table("storage_shares", schema=None) as batch_op:
        batch_op.create_index("ix_storage_shares_bucket_created", ["bucket", "created_at"], unique=False)
    op.create_table(
        "storage_mirrors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("target_endpoint", sa.String(length=20), nullable=False),
        sa.Column("target_bucket", sa.String(length=63), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=True),
        sa.Column("next_run_at", sa.DateTime(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(), nullable=True),
        sa.Column("last_ok_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_report", JSONDoc, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_mirrors")),
        sa.UniqueConstraint(
            "bucket",
            "target_endpoint",
            "target_bucket",
            name=op.f("uq_storage_mirrors_bucket_target_endpoint_target_bucket"),
        ),
    )
    with op.batch_alter_table("storage_mirrors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_storage_mirrors_bucket"), ["bucket"], unique=False)
    op.create_table(
        "storage_drills",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("mirror_id", sa.Uuid(), nullable=True),
        sa.Column("restored_bucket", sa.String(length=63), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("objects", sa.Integer(), server_default="0", nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("mismatches", JSONDoc, nullable=False),
        sa.Column("rpo_s", sa.Float(), nullable=True),
        sa.Column("rto_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_drills")),
    )
    with op.batch_alter_table("storage_drills", schema=None) as batch_op:
        batch_op.create_index("ix_storage_drills_bucket_started", ["bucket", "started_at"], unique=False)


def downgrade() -> None:
    for table in ("storage_drills", "storage_mirrors", "storage_shares", "storage_grants", "storage_buckets"):
        op.drop_table(table)
