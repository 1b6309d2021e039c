"""Monotonic totals kept in ``store_counters`` (see StoreCounter): bumped by the writer in
its own transaction, read by /metrics."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane.store.models import StoreCounter

ACTIONS, EVALUATIONS = "actions", "policy_evaluations"


def bump(session: Session, family: str, first: str, second: str) -> None:
    """Add one to (family, first, second), creating it at 1."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(StoreCounter).values(family=family, first=first, second=second, value=1)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["family", "first", "second"], set_={"value": StoreCounter.value + 1}
        )
    )


def read(conn: Connection, family: str) -> list[tuple[str, str, int]]:
    c = StoreCounter
    rows = conn.execute(
        select(c.first, c.second, c.value).where(c.family == family).order_by(c.first, c.second)
    )
    return [tuple(row) for row in rows]
