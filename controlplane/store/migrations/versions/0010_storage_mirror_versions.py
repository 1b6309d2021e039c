"""Storage backups: the source versions each mirror has copied (what makes a run
incremental), and the RPO a restore drill measured from the data.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 07:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_mirror_versions",
        sa.Column("mirror_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("version_id", sa.String(length=200), nullable=False),
        sa.Column("etag", sa.String(length=100), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("last_modified", sa.DateTime(), nullable=False),
        sa.Column("mirrored_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("mirror_id", "key", "version_id", name=op.f("pk_storage_mirror_versions")),
    )
    with op.batch_alter_table("storage_drills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rpo_data_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("storage_drills", schema=None) as batch_op:
        batch_op.drop_column("rpo_data_s")
    op.drop_table("storage_mirror_versions")
