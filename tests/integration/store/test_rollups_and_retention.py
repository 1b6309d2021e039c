"""Roll-ups equal aggregates over raw rows; retention and partitions on both dialects."""

import random
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from controlplane.actions import lifecycle
from controlplane.loops.store_maintenance import StoreMaintenance
from controlplane.schemas.ingest import MetricPointIn
from controlplane.settings import RetentionSettings
from controlplane.store import counters, partitions
from controlplane.store.models import Action, ActionAudit, RuleEvaluation
from controlplane.store.queries import SeriesQuery, series
from controlplane.store.writes import upsert_rollups, write_points

T0 = datetime(2026, 11, 20, 10, 0, 0)


def point(
    metric_type: str, service_name: str, timestamp: datetime, value: float, tags: dict
) -> MetricPointIn:
    return MetricPointIn(
        metric_type=metric_type, service_name=service_name, timestamp=timestamp, value=value, tags=tags
    )


def _write(store, rows):
    with store.engine.begin() as conn:
        for table in ("infrastructure_metrics",):
            partitions.ensure_partitions(conn, table=table, days={r.timestamp.date() for r in rows})
    with store.sessions.begin() as session:
        write_points(session, rows)
        upsert_rollups(session, rows)


def _rows(n: int, seed: int = 7) -> list[MetricPointIn]:
    rng = random.Random(seed)
    return [
        point(
            "coreplane_latency_seconds",
            rng.choice(["redis", "postgres"]),
            T0 + timedelta(seconds=rng.uniform(0, 3 * 3600)),
            round(rng.uniform(0, 100), 3),
            {"instance": rng.choice(["a", "b", "c"])},
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count"])
@pytest.mark.parametrize("step", [60, 300, 3600])
def test_rollups_equal_aggregates_over_raw_rows(store, agg, step):
    rows = _rows(3000)
    # Two batches, so roll-up rows are added to, not just inserted.
    _write(store, rows[:1700])
    _write(store, rows[1700:])
    query = SeriesQuery(
        "coreplane_latency_seconds", T0, T0 + timedelta(hours=3), step, agg, group_by="instance"
    )
    with store.sessions() as session:
        raw = series(session, query, "raw")
        rolled = series(session, query, "1h" if step == 3600 else "1m")
    assert len(raw) == 6

    def as_map(result):
        return {(tuple(s["labels"].items()), p[0]): p[1] for s in result for p in s["points"]}

    raw_map, rolled_map = as_map(raw), as_map(rolled)
    assert raw_map.keys() == rolled_map.keys()
    for key, value in raw_map.items():
        assert rolled_map[key] == pytest.approx(value, rel=1e-9), key


def test_p95_from_raw_points(store):
    rows = [
        point("coreplane_p", "redis", T0 + timedelta(seconds=i % 60), float(i), {}) for i in range(1, 101)
    ]
    _write(store, rows)
    query = SeriesQuery("coreplane_p", T0, T0 + timedelta(minutes=1), 60, "p95")
    with store.sessions() as session:
        (result,) = series(session, query, "raw")
    assert result["points"][0][1] == pytest.approx(95.05)


def test_retention_drops_old_data_and_keeps_overrides(store):
    now = datetime(2026, 11, 28, 12, 0)
    old = now - timedelta(days=10)
    rows = [
        point("coreplane_short", "redis", old, 1.0, {}),
        point("coreplane_long", "redis", old, 2.0, {}),
        point("coreplane_short", "redis", now - timedelta(hours=1), 3.0, {}),
    ]
    _write(store, rows)
    retention = RetentionSettings(raw_days=7, metric_type_days={"coreplane_long": 30}, rollup_1m_days=7)
    report = StoreMaintenance(store.engine, retention).run_once(now)
    with store.engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT metric_type, value FROM infrastructure_metrics ORDER BY value")
        ).all()
        old_rollups = conn.execute(
            sa.text("SELECT count(*) FROM metric_rollups_1m WHERE bucket < :t"),
            {"t": now - timedelta(days=7)},
        ).scalar_one()
    assert [tuple(r) for r in left] == [("coreplane_long", 2.0), ("coreplane_short", 3.0)]
    assert old_rollups == 0
    if store.dialect == "postgresql":
        # The 10-day-old partition stays: coreplane_long keeps 30 days.
        with store.engine.connect() as conn:
            names = [n for n, _ in partitions.list_partitions(conn, table="infrastructure_metrics")]
        assert partitions.partition_name("infrastructure_metrics", old.date()) in names
        assert report.deleted_rows >= 1


def test_data_past_retention_goes_as_whole_partitions_on_postgres(store):
    now = datetime(2026, 11, 28, 12, 0)
    _write(store, [point("coreplane_x", "redis", now - timedelta(days=40), 1.0, {})])
    report = StoreMaintenance(store.engine, RetentionSettings(raw_days=30)).run_once(now)
    assert store.count("infrastructure_metrics") == 0
    dropped = partitions.partition_name("infrastructure_metrics", date(2026, 10, 19)) in report.dropped
    # PostgreSQL drops the day's partition; SQLite has plain tables and deletes rows.
    assert dropped is (store.dialect == "postgresql")
    assert report.deleted_rows == (0 if store.dialect == "postgresql" else 1)


def test_partitions_are_made_ahead_and_points_across_midnight_land_in_their_day(store):
    before_midnight = datetime(2026, 11, 28, 23, 59, 30)
    report = StoreMaintenance(store.engine, RetentionSettings(partitions_ahead_days=2)).run_once(
        before_midnight
    )
    if store.dialect == "postgresql":
        for day in ("20261127", "20261128", "20261129", "20261130"):
            assert f"infrastructure_metrics_p{day}" in report.created
            assert f"infrastructure_events_p{day}" in report.created
    rows = [
        point("coreplane_midnight", "redis", datetime(2026, 11, 28, 23, 59, 59), 1.0, {}),
        point("coreplane_midnight", "redis", datetime(2026, 11, 29, 0, 0, 1), 2.0, {}),
    ]
    _write(store, rows)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            placed = dict(
                conn.execute(
                    sa.text("SELECT value, tableoid::regclass::text FROM infrastructure_metrics")
                ).all()
            )
        assert placed == {
            1.0: "infrastructure_metrics_p20261128",
            2.0: "infrastructure_metrics_p20261129",
        }
    else:
        assert store.count("infrastructure_metrics") == 2
    query = SeriesQuery(
        "coreplane_midnight", datetime(2026, 11, 28, 23), datetime(2026, 11, 29, 1), 3600, "sum"
    )
    with store.sessions() as session:
        (result,) = series(session, query, "1h")
    assert [p[1] for p in result["points"]] == [1.0, 2.0]


def test_retention_prunes_finished_actions_and_old_evaluations_but_not_the_counters(store):
    """A finished plan past actions_days goes with its step and audit trail; one still
    running stays however old; evaluations past evaluations_days go; the totals /metrics
    serves do not move."""
    now = datetime(2026, 11, 28, 12, 0)
    old, recent = now - timedelta(days=100), now - timedelta(days=1)
    new = {"params": {}, "requested_by": "test"}
    with store.sessions.begin() as session:
        plan, _ = lifecycle.create(session, kind="failover", target="redis", now=old, **new)
        step, _ = lifecycle.create(
            session, kind="redis.promote", target="redis", parent_id=plan.id, now=old, **new
        )
        for action in (step, plan):
            lifecycle.move(session, action, "running", actor="test", now=old)
            lifecycle.move(session, action, "succeeded", actor="test", now=old)
        stuck, _ = lifecycle.create(session, kind="failover", target="redis", now=old, **new)
        lifecycle.move(session, stuck, "running", actor="test", now=old)
        fresh, _ = lifecycle.create(session, kind="scale", target="tasks", now=recent, **new)
        lifecycle.move(session, fresh, "failed", actor="test", now=recent)
        for at in (old, recent):
            session.add(RuleEvaluation(rule="r", at=at, outcome="fired", reason="held", action_id=plan.id))
            counters.bump(session, counters.EVALUATIONS, "r", "fired")
        kept = {stuck.id, fresh.id}
    with store.engine.connect() as conn:
        before = counters.read(conn, counters.ACTIONS), counters.read(conn, counters.EVALUATIONS)
    StoreMaintenance(store.engine, RetentionSettings(actions_days=90, evaluations_days=30)).run_once(now)
    with store.sessions.begin() as session:
        assert set(session.scalars(sa.select(Action.id))) == kept
        audited = set(session.scalars(sa.select(ActionAudit.action_id)))
        assert audited == kept  # the pruned plan's and step's trail went with them
        assert [e.at for e in session.scalars(sa.select(RuleEvaluation))] == [recent]
    with store.engine.connect() as conn:
        assert (counters.read(conn, counters.ACTIONS), counters.read(conn, counters.EVALUATIONS)) == before
    assert ("failover", "succeeded", 1) in before[0] and ("r", "fired", 2) in before[1]
