"""A migrated store on each dialect: a fresh SQLite file, a fresh PostgreSQL schema."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controlplane.app import create_app
from controlplane.settings import Settings
from controlplane.store import partitions
from controlplane.store.db import make_engine, make_sessionmaker
from controlplane.store.migrate import upgrade
from tests.conftest import require

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


def empty_database(dialect: str, tmp_path, services) -> tuple[str, callable]:
    """A URL to an empty database of that dialect, and how to remove it."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path}/store.db", lambda: None
    require(services.postgres.url, "postgres")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(services.postgres.url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        partitions.forget_known()

    return f"{services.postgres.url}?options=-csearch_path%3D{schema}", drop


@contextlib.contextmanager
def migrated_store(dialect: str, tmp_path, services):  # type: ignore[no-untyped-def]
    url, drop = empty_database(dialect, tmp_path, services)
    upgrade(url)
    engine = make_engine(url)
    try:
        yield Store(dialect, url, engine, make_sessionmaker(engine))
    finally:
        engine.dispose()
        drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, services):
    with migrated_store(request.param, tmp_path, services) as migrated:
        yield migrated


@pytest.fixture
def pg_store(tmp_path, services):
    """For what only PostgreSQL can show (concurrent writers)."""
    with migrated_store("postgresql", tmp_path, services) as migrated:
        yield migrated


def make_settings(store: Store, **overrides) -> Settings:
    return Settings(database_url=store.url, admin_token=ADMIN, **overrides)


@pytest.fixture
def api(store):
    """The real app on that store, driven in-process."""
    with TestClient(create_app(make_settings(store)), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client
