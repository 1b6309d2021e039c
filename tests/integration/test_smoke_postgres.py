"""PostgreSQL through SQLAlchemy + psycopg, and the store's migrations on it."""

import uuid

import sqlalchemy as sa

from controlplane.store.db import make_engine
from controlplane.store.migrate import current_revision, head_revision, upgrade
from tests.conftest import reach, require


def test_postgres_answers_and_round_trips_a_row(services):
    require(services.postgres.url, "postgres")
    engine = make_engine(services.postgres.url)
    try:
        conn = reach("postgres", engine.url, engine.connect)
        with conn, conn.begin():
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            table = f"smoke_{uuid.uuid4().hex[:8]}"
            conn.execute(sa.text(f"CREATE TEMP TABLE {table} (v jsonb)"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES ('{{\"k\": 42}}')"))
            assert conn.execute(sa.text(f"SELECT v->>'k' FROM {table}")).scalar_one() == "42"
        assert version.startswith("15.")
    finally:
        engine.dispose()


def test_store_migrates_on_postgres(services):
    require(services.postgres.url, "postgres")
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    admin = make_engine(services.postgres.url)
    conn = reach("postgres", admin.url, admin.connect)
    with conn, conn.begin():
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{services.postgres.url}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        assert current_revision(url) == head_revision()
        engine = make_engine(url)
        columns = {
            table: {
                c["name"]: type(c["type"]).__name__ for c in sa.inspect(engine).get_columns(table)
            }
            for table in (
                "infrastructure_events",
                "infrastructure_metrics",
                "infrastructure_settings",
            )
        }
        engine.dispose()
        assert columns["infrastructure_events"]["details"] == "JSONB"
        assert columns["infrastructure_metrics"]["tags"] == "JSONB"
        assert columns["infrastructure_metrics"]["id"] == "UUID"
        assert set(columns["infrastructure_settings"]) == {
            "id",
            "setting_type",
            "value",
            "updated_at",
        }
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
