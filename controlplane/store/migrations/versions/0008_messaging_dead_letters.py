"""Messaging: dead-lettered RabbitMQ messages archived from their dead-letter queues.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 23:59:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "mq_dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("vhost", sa.String(length=200), server_default="/", nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("exchange", sa.String(length=200), nullable=False),
        sa.Column("routing_key", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("properties", JSONDoc, nullable=False),
        sa.Column("headers", JSONDoc, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("dead_at", sa.DateTime(), nullable=False),
        sa.Column("archived_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("replayed_at", sa.DateTime(), nullable=True),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mq_dead_letters")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_mq_dead_letters_fingerprint")),
    )
    with op.batch_alter_table("mq_dead_letters", schema=None) as batch_op:
        batch_op.create_index("ix_mq_dead_letters_state_dead_at", ["state", "dead_at"], unique=False)
        batch_op.create_index("ix_mq_dead_letters_queue_dead_at", ["queue", "dead_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mq_dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_mq_dead_letters_queue_dead_at")
        batch_op.drop_index("ix_mq_dead_letters_state_dead_at")
    op.drop_table("mq_dead_letters")
