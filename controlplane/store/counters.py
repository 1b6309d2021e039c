"""Monotonic totals (StoreCounter), read by /metrics.

A writer adds a delta row in its own transaction: an insert, with no shared row to lock,
so concurrent writers never wait on or deadlock over a counter, and a rolled-back
transaction or savepoint takes its deltas with it. ``fold`` (the maintenance loop) moves
deltas into the totals: it deletes them with RETURNING and adds exactly what it deleted,
so two processes folding at once never count a delta twice. ``read`` adds what is not
folded yet."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane.store.models import StoreCounter, StoreCounterDelta

ACTIONS, EVALUATIONS = "actions", "policy_evaluations"
FOLD_BATCH = 50_000


def bump(session: Session, family: str, first: str, second: str) -> None:
    """Add one to (family, first, second) as part of ``session``'s transaction."""
    session.add(StoreCounterDelta(family=family, first=first, second=second))


def fold(conn: Connection) -> int:
    """Fold up to FOLD_BATCH deltas into the totals; returns how many."""
    d = StoreCounterDelta
    some = select(d.id).limit(FOLD_BATCH).scalar_subquery()
    gone = conn.execute(delete(d).where(d.id.in_(some)).returning(d.family, d.first, d.second)).all()
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for (family, first, second), n in sorted(Counter(tuple(row) for row in gone).items()):
        stmt = insert(StoreCounter).values(family=family, first=first, second=second, value=n)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["family", "first", "second"], set_={"value": StoreCounter.value + n}
            )
        )
    return len(gone)


def read(conn: Connection, family: str) -> list[tuple[str, str, int]]:
    """(first, second, total) of ``family``, sorted."""
    c, d = StoreCounter, StoreCounterDelta
    totals: Counter[tuple[str, str]] = Counter()
    for first, second, value in conn.execute(select(c.first, c.second, c.value).where(c.family == family)):
        totals[(first, second)] += value
    pending = select(d.first, d.second, func.count()).where(d.family == family).group_by(d.first, d.second)
    for first, second, value in conn.execute(pending):
        totals[(first, second)] += value
    return [(first, second, value) for (first, second), value in sorted(totals.items())]
