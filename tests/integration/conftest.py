"""Integration fixtures: a migrated store on each dialect (a fresh SQLite file, a fresh
PostgreSQL schema) and the real app on it, for the store, catalog, policy and action tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from controlplane.app import create_app
from tests.support.stores import ADMIN, make_settings, migrated_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, services):
    with migrated_store(request.param, tmp_path, services) as migrated:
        yield migrated


@pytest.fixture
def pg_store(tmp_path, services):
    """For what only PostgreSQL can show (concurrent writers)."""
    with migrated_store("postgresql", tmp_path, services) as migrated:
        yield migrated


@pytest.fixture
def api(store):
    """The real app on that store, driven in-process."""
    with TestClient(create_app(make_settings(store)), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client
