"""The catalog on both dialects: reports register instances, damped recoveries, silent
instances turning critical, a returning primary flagged, every transition in the history."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from controlplane.catalog import instances
from controlplane.catalog.instances import InstanceReport
from controlplane.store import partitions

T0 = datetime(2026, 11, 28, 12, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def catalog_store(store):
    if store.dialect == "postgresql":  # transitions are events: their day's partition must exist
        with store.engine.begin() as conn:
            partitions.ensure_partitions(conn, table="infrastructure_events", days={T0.date()})
    return store


def report(session, address: str, status: str, now: datetime, role: str = "replica", observed_at=None):  # type: ignore[no-untyped-def]
    item = InstanceReport(service="redis", kind="redis", address=address, status=status, role=role, ttl_s=30,
                          observed_at=observed_at)  # fmt: skip
    return instances.report(session, item, agent_id=None, now=now, hold_s=10)


def test_health_history_with_damping_and_silence(catalog_store):
    with catalog_store.sessions.begin() as session:
        report(session, "10.0.0.1:6379", "passing", at(0), role="primary")
        report(session, "10.0.0.1:6379", "critical", at(1), role="primary")
        report(session, "10.0.0.1:6379", "passing", at(2), role="primary")  # a recovery: held back
        (service,) = instances.describe(session, "redis")
        assert service["instances"][0]["health"] == "critical"
        assert service["instances"][0]["pending_health"] == "passing"
        assert instances.promote_held(session, now=at(11), hold_s=10) == 0
        assert instances.promote_held(session, now=at(12), hold_s=10) == 1
        # Nobody reports for longer than the TTL: critical, and the message says why.
        assert instances.expire_silent(session, now=at(31)) == 0
        assert instances.expire_silent(session, now=at(33)) == 1
        (service,) = instances.describe(session, "redis")
        assert service["instances"][0]["health"] == "critical"
        assert "no report for 31 s" in service["instances"][0]["health_message"]
        history = instances.history(session, "redis", "10.0.0.1:6379", since=T0, limit=10)
        assert [h["status"] for h in reversed(history)] == ["passing", "critical", "passing", "critical"]
        assert service["index"] >= 5  # every change moved the index blocking queries wait on


def test_a_returning_primary_is_flagged_not_believed(catalog_store):
    with catalog_store.sessions.begin() as session:
        old = report(session, "10.0.0.1:6379", "critical", at(0), role="primary")
        new = report(session, "10.0.0.2:6379", "passing", at(0), role="replica")
        instances.set_role(session, new, "primary", now=at(1), reason="failover")
        instances.set_role(session, old, "replica", now=at(1), reason="failover")
        report(session, "10.0.0.1:6379", "passing", at(2), role="primary")  # it came back as a primary
        roles = {i["address"]: i["role"] for i in instances.describe(session, "redis")[0]["instances"]}
        assert roles == {"10.0.0.1:6379": "replica", "10.0.0.2:6379": "primary"}
        report(session, "10.0.0.1:6379", "passing", at(3), role="primary")  # said again: one flag
        flags = [
            h for h in instances.history(session, "redis", "10.0.0.1:6379", since=T0, limit=20)
            if h["event_type"] == "catalog.role"
        ]  # fmt: skip
        assert [f["details"]["role"] for f in flags] == ["replica"]
    with catalog_store.engine.connect() as conn:
        conflicts = conn.execute(
            sa.text("SELECT count(*) FROM infrastructure_events WHERE event_type = 'catalog.conflict'")
        ).scalar_one()
    assert conflicts == 1


def test_a_role_read_before_a_failover_does_not_undo_it(catalog_store):
    """A probe that read "replica" just before the promotion reaches the catalog after it
    (a heartbeat in flight, a spooled event): ignored. What the backend says afterwards
    still counts, whichever way it goes."""
    with catalog_store.sessions.begin() as session:
        old = report(session, "10.0.0.1:6379", "critical", at(0), role="primary")
        new = report(session, "10.0.0.2:6379", "passing", at(0), role="replica")
        instances.set_role(session, new, "primary", now=at(1), reason="failover")
        instances.set_role(session, old, "replica", now=at(1), reason="failover")
        report(session, "10.0.0.2:6379", "passing", at(1.5), role="replica", observed_at=at(0.9))
        report(session, "10.0.0.1:6379", "passing", at(1.5), role="primary", observed_at=at(0.8))
        roles = {i["address"]: i["role"] for i in instances.describe(session, "redis")[0]["instances"]}
        assert roles == {"10.0.0.1:6379": "replica", "10.0.0.2:6379": "primary"}
        # Read after the change: believed (an operator demoted it by hand, say).
        report(session, "10.0.0.2:6379", "passing", at(3), role="replica", observed_at=at(2.5))
        roles = {i["address"]: i["role"] for i in instances.describe(session, "redis")[0]["instances"]}
        assert roles["10.0.0.2:6379"] == "replica"
    with catalog_store.engine.connect() as conn:  # the old one's stale "primary" was no conflict either
        conflicts = conn.execute(
            sa.text("SELECT count(*) FROM infrastructure_events WHERE event_type = 'catalog.conflict'")
        ).scalar_one()
    assert conflicts == 0


def test_two_first_reports_of_a_service_at_once_share_it(pg_store):
    """The second insert of a new service waits on the first's unique key, fails, and reads
    the first's row instead of failing the agent's heartbeat (PostgreSQL: SQLite serialises
    writers, so there the reports cannot overlap)."""
    import threading

    with pg_store.engine.begin() as conn:
        partitions.ensure_partitions(conn, table="infrastructure_events", days={T0.date()})
    first = pg_store.sessions()
    first.begin()
    report(first, "10.9.0.1:6379", "passing", at(0))  # inserted, not committed
    errors: list[BaseException] = []

    def second_report() -> None:
        try:
            with pg_store.sessions.begin() as second:
                report(second, "10.9.0.2:6379", "passing", at(0))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=second_report)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive(), "the second insert should wait on the first's unique key"
    first.commit()
    first.close()
    thread.join(timeout=10)
    assert errors == []
    with pg_store.sessions() as session:
        assert [len(s["instances"]) for s in instances.describe(session, "redis")] == [2]
