"""One Alembic history for both dialects: up from empty, down to nothing, no drift."""

import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from controlplane.store import counters
from controlplane.store.db import make_engine
from controlplane.store.migrate import alembic_config, current_revision, head_revision, upgrade
from controlplane.store.migrations.env_filters import include_object
from controlplane.store.models import Base
from tests.support.stores import empty_database

SEED = {"infrastructure_events", "infrastructure_metrics", "infrastructure_settings"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upgrade_from_empty_then_downgrade_to_nothing(dialect, tmp_path, services):
    from alembic import command

    url, drop = empty_database(dialect, tmp_path, services)
    try:
        upgrade(url)
        assert current_revision(url) == head_revision()
        engine = make_engine(url)
        tables = set(sa.inspect(engine).get_table_names())
        assert tables >= SEED
        assert {"agents", "api_tokens", "users", "actions", "alerts", "settings_history"} <= tables
        engine.dispose()
        command.downgrade(alembic_config(url), "base")
        engine = make_engine(url)
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        engine.dispose()
    finally:
        drop()


def test_models_and_migrations_agree(store):
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_seed_columns_keep_their_contract(store):
    inspector = sa.inspect(store.engine)
    columns = {t: {c["name"]: c for c in inspector.get_columns(t)} for t in SEED}
    assert list(columns["infrastructure_metrics"]) == [
        "id",
        "metric_type",
        "timestamp",
        "service_name",
        "value",
        "tags",
    ]
    assert list(columns["infrastructure_events"]) == [
        "id",
        "event_type",
        "timestamp",
        "service_name",
        "details",
        "status",
    ]
    assert {"id", "setting_type", "value", "updated_at"} <= set(columns["infrastructure_settings"])
    assert columns["infrastructure_metrics"]["metric_type"]["type"].length == 50
    assert columns["infrastructure_events"]["status"]["type"].length == 20
    if store.dialect == "postgresql":
        assert type(columns["infrastructure_metrics"]["tags"]["type"]).__name__ == "JSONB"
        assert type(columns["infrastructure_events"]["id"]["type"]).__name__ == "UUID"
        with store.engine.connect() as conn:
            kinds = dict(
                conn.execute(
                    sa.text(
                        "SELECT relname, relkind FROM pg_class WHERE relname IN "
                        "('infrastructure_metrics', 'infrastructure_events') AND relnamespace = current_schema()::regnamespace"
                    )
                ).all()
            )
        assert kinds == {"infrastructure_metrics": "p", "infrastructure_events": "p"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_counters_start_from_the_history_already_stored(dialect, tmp_path, services):
    """0005 fills store_counters from the actions' audit trail and the rule evaluations
    a store already holds, so /metrics' counters carry on instead of starting over."""
    url, drop = empty_database(dialect, tmp_path, services)
    try:
        upgrade(url, "0004")
        engine = make_engine(url)
        with engine.begin() as conn:
            for n, kind in enumerate(("failover", "failover", "scale")):
                action = uuid.uuid4().hex
                conn.execute(sa.text(
                    "INSERT INTO actions (id, kind, target, state, requested_by, created_at, updated_at, attempts,"
                    " max_attempts, timeout_s) VALUES (:id, :kind, 'redis', 'succeeded', 't', :at, :at, 1, 1, 60)"),
                    {"id": action, "kind": kind, "at": datetime(2026, 11, 1, 0, n)})  # fmt: skip
                for state in ("pending", "succeeded"):
                    conn.execute(sa.text("INSERT INTO action_audit (id, action_id, at, actor, to_state) "
                                         "VALUES (:id, :action, :at, 't', :state)"),
                                 {"id": uuid.uuid4().hex, "action": action, "at": datetime(2026, 11, 1), "state": state})  # fmt: skip
            for outcome in ("fired", "suppressed", "suppressed"):
                conn.execute(sa.text("INSERT INTO rule_evaluations (id, rule, at, outcome, reason) "
                                     "VALUES (:id, 'redis-failover', :at, :outcome, 'r')"),
                             {"id": uuid.uuid4().hex, "at": datetime(2026, 11, 1), "outcome": outcome})  # fmt: skip
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            assert counters.read(conn, counters.ACTIONS) == [
                ("failover", "pending", 2), ("failover", "succeeded", 2),
                ("scale", "pending", 1), ("scale", "succeeded", 1),
            ]  # fmt: skip
            assert counters.read(conn, counters.EVALUATIONS) == [
                ("redis-failover", "fired", 1), ("redis-failover", "suppressed", 2),
            ]  # fmt: skip
        engine.dispose()
    finally:
        drop()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_0006_moves_the_credentials_out_of_the_public_settings_and_back(dialect, tmp_path, services):
    """A store made before 0006 keeps its admin token and cookie key, now in control_secrets
    (not in infrastructure_settings, which Grafana reads); downgrading puts them back."""
    from alembic import command

    url, drop = empty_database(dialect, tmp_path, services)
    try:
        upgrade(url, "0005")
        engine = make_engine(url)
        insert = sa.text("INSERT INTO infrastructure_settings (id, setting_type, value, updated_at, version) "
                         "VALUES (:id, :type, :value, :at, 1)")  # fmt: skip
        with engine.begin() as conn:
            for setting_type, value in (("auth.admin_token", '{"sha256": "ab12"}'),
                                        ("console.session_secret", '{"secret": "k3y"}'),
                                        ("feature.flags", '{"x": 1}')):  # fmt: skip
                conn.execute(insert, {"id": uuid.uuid4().hex, "type": setting_type, "value": value,
                                      "at": datetime(2026, 11, 1)})  # fmt: skip
        upgrade(url)
        with engine.connect() as conn:
            secrets = dict(conn.execute(sa.text("SELECT name, value FROM control_secrets")).all())
            public = conn.execute(sa.text("SELECT setting_type FROM infrastructure_settings")).scalars().all()
        assert secrets == {"admin_token_sha256": "ab12", "session_secret": "k3y"}
        assert public == ["feature.flags"]
        command.downgrade(alembic_config(url), "0005")
        with engine.connect() as conn:
            back = conn.execute(sa.text("SELECT setting_type FROM infrastructure_settings")).scalars().all()
        assert sorted(back) == ["auth.admin_token", "console.session_secret", "feature.flags"]
        engine.dispose()
    finally:
        drop()
