"""Lock contention is a 503 the client retries, never a 500 (issue 12, finding 5), on
PostgreSQL too; any other store failure still is a server error, not hidden as "busy"."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from controlplane.api.problems import is_contention
from controlplane.app import create_app
from controlplane.settings import Settings
from controlplane.store.db import make_engine
from tests.support.stores import ADMIN


def _batch(batch_id: str) -> dict:
    at = datetime.now(UTC).isoformat()
    point = {"metric_type": "coreplane_test_value", "service_name": "redis", "timestamp": at, "value": 1.0}
    return {"batch_id": batch_id, "agent": "test-agent", "metrics": [point], "events": []}


def test_a_postgresql_lock_timeout_is_answered_503_retry_after_and_the_retry_goes_in(pg_store):
    # This app's connections give up on a lock after 200 ms, as a server with lock_timeout set does.
    url = pg_store.url + "%20-clock_timeout%3D200"
    app = create_app(Settings(database_url=url, admin_token=ADMIN))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as api:
        with pg_store.engine.connect() as holder:
            holder.execute(sa.text("LOCK TABLE infrastructure_metrics IN ACCESS EXCLUSIVE MODE"))
            answer = api.post("/api/v1/ingest", json=_batch("locked-1"))
            holder.rollback()
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"] == "application/problem+json"
        again = api.post("/api/v1/ingest", json=_batch("locked-1"))
        assert again.status_code == 202, again.text
        assert again.json()["duplicate"] is False  # the 503's transaction kept nothing
    assert pg_store.count("infrastructure_metrics") == 1


def test_only_lock_contention_counts_as_busy(tmp_path):
    store = tmp_path / "s.db"
    engine = make_engine(f"sqlite:///{store}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError) as locked, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert is_contention(locked.value)
    with pytest.raises(OperationalError) as broken, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))
    assert not is_contention(broken.value)
    engine.dispose()
