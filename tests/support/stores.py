"""A migrated store on each dialect: a fresh SQLite file, a fresh PostgreSQL schema."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from controlplane.settings import Settings
from controlplane.store import partitions
from controlplane.store.db import make_engine, make_sessionmaker
from controlplane.store.migrate import upgrade
from tests.support.services import require

ADMIN = "store-test-admin-token"


@dataclass
class Store:
    dialect: str
    url: str
    engine: sa.Engine
    sessions: sessionmaker[Session]

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def empty_database(
    dialect: str, root: Path, settings: Settings, prefix: str = "t"
) -> tuple[str, Callable[[], None]]:
    """A URL to an empty database of that dialect (a SQLite file in ``root``, or a new schema
    on ``settings``' PostgreSQL), and how to remove it."""
    if dialect == "sqlite":
        return f"sqlite:///{root}/store.db", lambda: None
    require(settings.postgres.url, "postgres")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(settings.postgres.url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        partitions.forget_known()

    return f"{settings.postgres.url}?options=-csearch_path%3D{schema}", drop


@contextmanager
def migrated_url(dialect: str, root: Path, settings: Settings, prefix: str = "t") -> Iterator[str]:
    """The URL of an empty, migrated store of that dialect; removed afterwards."""
    url, drop = empty_database(dialect, root, settings, prefix)
    try:
        upgrade(url)
        yield url
    finally:
        drop()


@contextmanager
def fresh_schema(settings: Settings) -> Iterator[str]:
    """A migrated store in a new PostgreSQL schema; dropped afterwards."""
    with migrated_url("postgresql", Path("."), settings, prefix="bench") as url:
        yield url


@contextmanager
def migrated_store(dialect: str, root: Path, settings: Settings) -> Iterator[Store]:
    """A migrated store of that dialect with an engine and sessions on it."""
    with migrated_url(dialect, root, settings) as url:
        engine = make_engine(url)
        try:
            yield Store(dialect, url, engine, make_sessionmaker(engine))
        finally:
            engine.dispose()


def make_settings(store: Store, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=store.url, admin_token=ADMIN, **overrides)


def build_rollups(conn) -> None:  # type: ignore[no-untyped-def]
    """The roll-ups incremental ingest would have left, built from the raw points already
    loaded (one pass per table), then ANALYZE. ``conn``: an autocommit psycopg connection."""
    for table, unit in (("metric_rollups_1m", "minute"), ("metric_rollups_1h", "hour")):
        conn.execute(
            f"""
            INSERT INTO {table} (metric_type, service_name, series_key, bucket, tags, count, sum, min, max)
            SELECT metric_type, service_name, md5(tags::text), date_trunc('{unit}', "timestamp"), tags,
                   count(*), sum(value), min(value), max(value)
            FROM infrastructure_metrics GROUP BY 1, 2, 3, 4, 5
            """
        )
    conn.execute("ANALYZE")
