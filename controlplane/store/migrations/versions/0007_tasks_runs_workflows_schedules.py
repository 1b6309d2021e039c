"""Background tasks: the runs heard from Celery's events, workflows with their steps,
and the schedules `coreplane beat` reads.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 19:52:37.751006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("task_id", sa.String(length=155), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("args", sa.Text(), nullable=True),
        sa.Column("kwargs", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("exception", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("retries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("root_id", sa.String(length=155), nullable=True),
        sa.Column("parent_id", sa.String(length=155), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("runtime_s", sa.Float(), nullable=True),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_runs")),
    )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index("ix_task_runs_name_finished", ["name", "finished_at"], unique=False)
        batch_op.create_index("ix_task_runs_queue_finished", ["queue", "finished_at"], unique=False)
        batch_op.create_index("ix_task_runs_state_updated", ["state", "updated_at"], unique=False)
        batch_op.create_index("ix_task_runs_updated_at", ["updated_at"], unique=False)

    op.create_table(
        "task_schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column(
            "args",
            JSONDoc,
            nullable=False,
        ),
        sa.Column(
            "kwargs",
            JSONDoc,
            nullable=False,
        ),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("every_s", sa.Float(), nullable=True),
        sa.Column("crontab", sa.String(length=100), nullable=True),
        sa.Column("run_at", sa.DateTime(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("last_run_at", sa.DateTime(), nullable=True),
        sa.Column("next_run_at", sa.DateTime(), nullable=True),
        sa.Column("total_runs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_task_schedules_name")),
    )
    op.create_table(
        "task_workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column(
            "spec",
            JSONDoc,
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_workflows")),
    )
    with op.batch_alter_table("task_workflows", schema=None) as batch_op:
        batch_op.create_index("ix_task_workflows_state_created", ["state", "created_at"], unique=False)

    op.create_table(
        "task_workflow_steps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=155), nullable=False),
        sa.Column(
            "depends_on",
            JSONDoc,
            nullable=False,
        ),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "result",
            JSONDoc,
            nullable=True,
        ),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["task_workflows.id"],
            name=op.f("fk_task_workflow_steps_workflow_id_task_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_workflow_steps")),
        sa.UniqueConstraint("task_id", name=op.f("uq_task_workflow_steps_task_id")),
        sa.UniqueConstraint("workflow_id", "step", name=op.f("uq_task_workflow_steps_workflow_id_step")),
    )
    with op.batch_alter_table("task_workflow_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_workflow_steps_workflow_id"), ["workflow_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_workflow_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_workflow_steps_workflow_id"))

    op.drop_table("task_workflow_steps")
    with op.batch_alter_table("task_workflows", schema=None) as batch_op:
        batch_op.drop_index("ix_task_workflows_state_created")

    op.drop_table("task_workflows")
    op.drop_table("task_schedules")
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_updated_at")
        batch_op.drop_index("ix_task_runs_state_updated")
        batch_op.drop_index("ix_task_runs_queue_finished")
        batch_op.drop_index("ix_task_runs_name_finished")

    op.drop_table("task_runs")
