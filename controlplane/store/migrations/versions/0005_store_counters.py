"""Monotonic totals for /metrics (actions by kind and state, rule evaluations by rule and
outcome), so that retention can prune finished actions and old evaluations without a
counter going down; filled from the history already stored. Writers add deltas, which
the maintenance loop folds in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_counters",
        sa.Column("family", sa.String(length=50), nullable=False),
        sa.Column("first", sa.String(length=100), nullable=False),
        sa.Column("second", sa.String(length=20), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("family", "first", "second", name=op.f("pk_store_counters")),
    )
    op.create_table(
        "store_counter_deltas",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("family", sa.String(length=50), nullable=False),
        sa.Column("first", sa.String(length=100), nullable=False),
        sa.Column("second", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_counter_deltas")),
    )
    op.execute(
        "INSERT INTO store_counters (family, first, second, value) "
        "SELECT 'actions', a.kind, au.to_state, count(*) FROM action_audit au "
        "JOIN actions a ON a.id = au.action_id GROUP BY a.kind, au.to_state"
    )
    op.execute(
        "INSERT INTO store_counters (family, first, second, value) "
        "SELECT 'policy_evaluations', rule, outcome, count(*) FROM rule_evaluations GROUP BY rule, outcome"
    )


def downgrade() -> None:
    op.drop_table("store_counter_deltas")
    op.drop_table("store_counters")
