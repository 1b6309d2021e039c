"""Catalog health and versions, the action lifecycle and its audit trail, rule evaluations, the leader lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:44:16.140338
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_lease")),
    )
    op.create_table(
        "action_audit",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["action_id"], ["actions.id"], name=op.f("fk_action_audit_action_id_actions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_audit")),
    )
    with op.batch_alter_table("action_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_action_audit_action_id"), ["action_id"], unique=False)

    op.create_table(
        "rule_evaluations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("action_id", sa.Uuid(), nullable=True),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["actions.id"],
            name=op.f("fk_rule_evaluations_action_id_actions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_evaluations")),
    )
    with op.batch_alter_table("rule_evaluations", schema=None) as batch_op:
        batch_op.create_index("ix_rule_evaluations_rule_at", ["rule", "at"], unique=False)

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("rule", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("timeout_s", sa.Float(), server_default="60", nullable=False))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "links",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.create_index(batch_op.f("ix_actions_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_actions_rule"), ["rule"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_actions_parent_id_actions"), "actions", ["parent_id"], ["id"], ondelete="CASCADE"
        )

    with op.batch_alter_table("catalog_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health_message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("health_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("pending_health", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("pending_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("ttl_s", sa.Float(), server_default="30", nullable=False))

    with op.batch_alter_table("catalog_services", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.BigInteger(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("catalog_services", schema=None) as batch_op:
        batch_op.drop_column("version")

    with op.batch_alter_table("catalog_instances", schema=None) as batch_op:
        batch_op.drop_column("ttl_s")
        batch_op.drop_column("pending_since")
        batch_op.drop_column("pending_health")
        batch_op.drop_column("health_since")
        batch_op.drop_column("health_message")

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_actions_parent_id_actions"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_actions_rule"))
        batch_op.drop_index(batch_op.f("ix_actions_parent_id"))
        batch_op.drop_column("links")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("not_before")
        batch_op.drop_column("timeout_s")
        batch_op.drop_column("max_attempts")
        batch_op.drop_column("attempts")
        batch_op.drop_column("rule")
        batch_op.drop_column("parent_id")

    with op.batch_alter_table("rule_evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_evaluations_rule_at")

    op.drop_table("rule_evaluations")
    with op.batch_alter_table("action_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_audit_action_id"))

    op.drop_table("action_audit")
    op.drop_table("leader_lease")
