"""PostgreSQL through SQLAlchemy + psycopg (the store's migrations: tests/integration/store)."""

import uuid

import sqlalchemy as sa

from controlplane.store.db import make_engine
from tests.support.services import reach, require


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
