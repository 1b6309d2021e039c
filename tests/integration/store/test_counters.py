"""store_counters on both dialects: a bump is part of its transaction (a rolled-back
savepoint takes it back), folding moves deltas into totals without changing what /metrics
reads, and two folds at once never count a delta twice."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from controlplane.store import counters


def _deltas(store) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM store_counter_deltas")).scalar_one()


def test_a_bump_belongs_to_its_transaction_and_folding_keeps_the_totals(store):
    with store.sessions.begin() as session:
        counters.bump(session, counters.ACTIONS, "failover", "pending")
        try:
            with session.begin_nested():
                counters.bump(session, counters.ACTIONS, "failover", "failed")
                raise RuntimeError("this rule failed")
        except RuntimeError:
            pass
        counters.bump(session, counters.ACTIONS, "failover", "pending")
    with store.engine.connect() as conn:
        assert counters.read(conn, counters.ACTIONS) == [("failover", "pending", 2)]
    with store.engine.begin() as conn:
        assert counters.fold(conn) == 2
    with store.sessions.begin() as session:
        counters.bump(session, counters.ACTIONS, "failover", "pending")
    with store.engine.connect() as conn:
        assert counters.read(conn, counters.ACTIONS) == [("failover", "pending", 3)]
    assert _deltas(store) == 1


def test_two_folds_at_once_count_each_delta_once(store):
    with store.sessions.begin() as session:
        for _ in range(500):
            counters.bump(session, counters.EVALUATIONS, "r", "fired")
    barrier, folded = threading.Barrier(2), []

    def fold() -> None:
        barrier.wait()
        with store.engine.begin() as conn:
            folded.append(counters.fold(conn))

    threads = [threading.Thread(target=fold) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(folded) == 500 and _deltas(store) == 0
    with store.engine.connect() as conn:
        assert counters.read(conn, counters.EVALUATIONS) == [("r", "fired", 500)]
