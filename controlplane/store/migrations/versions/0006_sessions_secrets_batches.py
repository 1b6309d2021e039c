"""Security: console sessions kept server-side (so they can be ended), the control
plane's own secrets out of the public settings table, and batch ids scoped per agent
with a content hash.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:10:00
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# setting_type in infrastructure_settings -> (name in control_secrets, key in the JSON value)
_MOVED = {
    "auth.admin_token": ("admin_token_sha256", "sha256"),
    "console.session_secret": ("session_secret", "secret"),
}

# The public settings table as this migration saw it (not the model, which may change later).
_SETTINGS = sa.table(
    "infrastructure_settings",
    sa.column("id", sa.Uuid),
    sa.column("setting_type", sa.String),
    sa.column("value", sa.JSON),
    sa.column("updated_at", sa.DateTime),
)

_SECRETS = sa.table(
    "control_secrets",
    sa.column("name", sa.String),
    sa.column("value", sa.Text),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_digest", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("credential_digest", sa.String(length=64), nullable=True),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_console_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id_digest", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_sessions_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_console_sessions_expires_at"), ["expires_at"], unique=False)

    secrets = op.create_table(
        "control_secrets",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_control_secrets")),
    )
    conn = op.get_bind()
    settings = _SETTINGS
    rows = conn.execute(
        sa.select(settings.c.setting_type, settings.c.value, settings.c.updated_at).where(
            settings.c.setting_type.in_(list(_MOVED))
        )
    ).all()
    for setting_type, value, updated_at in rows:
        name, key = _MOVED[setting_type]
        if isinstance(value, dict) and value.get(key):
            op.bulk_insert(secrets, [{"name": name, "value": value[key], "created_at": updated_at}])
    conn.execute(sa.delete(settings).where(settings.c.setting_type.in_(list(_MOVED))))

    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.drop_constraint("pk_ingest_batches", type_="primary")
        batch_op.create_primary_key("pk_ingest_batches", ["agent", "batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.drop_constraint("pk_ingest_batches", type_="primary")
        batch_op.drop_column("content_hash")
    # Two agents may have used one batch id meanwhile: keep one row of each.
    op.execute(
        "DELETE FROM ingest_batches WHERE EXISTS (SELECT 1 FROM ingest_batches b "
        "WHERE b.batch_id = ingest_batches.batch_id AND b.agent < ingest_batches.agent)"
    )
    with op.batch_alter_table("ingest_batches", schema=None) as batch_op:
        batch_op.create_primary_key("pk_ingest_batches", ["batch_id"])

    conn = op.get_bind()
    settings = _SETTINGS
    for setting_type, (name, key) in _MOVED.items():
        row = conn.execute(
            sa.select(_SECRETS.c.value, _SECRETS.c.created_at).where(_SECRETS.c.name == name)
        ).first()
        if row is not None:
            conn.execute(
                sa.insert(settings).values(
                    id=uuid.uuid4(), setting_type=setting_type, value={key: row[0]}, updated_at=row[1]
                )
            )
    op.drop_table("control_secrets")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_console_sessions_user_id"))
    op.drop_table("console_sessions")
