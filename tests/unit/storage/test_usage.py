"""The usage ledger: writes add up per bucket, a flush hands them to the store and forgets
only what it wrote (writes noted meanwhile stay), a full count settles a bucket, and each
app's ledger is its own."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.storage.usage import Usage
from controlplane.store.models import Base, StorageBucket


def _store() -> tuple[Session, str]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[StorageBucket.__table__])
    name = f"u-{uuid.uuid4().hex[:8]}"
    session = Session(engine)
    now = utcnow()
    session.add(StorageBucket(name=name, lifecycle=[], created_at=now, created_by="t", updated_at=now,
                              used_bytes=100, objects=1))  # fmt: skip
    session.commit()
    return session, name


def test_a_flush_adds_what_is_pending_and_keeps_what_came_meanwhile():
    session, name = _store()
    usage = Usage()
    usage.note(name, 50, 1)
    usage.note(name, -20, -1)
    assert usage.pending_bytes(name) == 30
    forget = usage.flush(session)
    usage.note(name, 7, 1)  # a write while the flush's transaction is open
    session.commit()
    forget()
    row = session.scalars(select(StorageBucket).where(StorageBucket.name == name)).one()
    session.refresh(row)
    assert (row.used_bytes, row.objects) == (130, 1)
    assert usage.pending_bytes(name) == 7


def test_a_failed_flush_keeps_everything_and_usage_never_goes_below_zero():
    session, name = _store()
    usage = Usage()
    usage.note(name, -500, -5)
    usage.flush(session)
    session.rollback()  # the commit failed: forget() is never called
    assert usage.pending_bytes(name) == -500
    forget = usage.flush(session)
    session.commit()
    forget()
    row = session.scalars(select(StorageBucket).where(StorageBucket.name == name)).one()
    session.refresh(row)
    assert (row.used_bytes, row.objects) == (0, 0)
    assert usage.pending_bytes(name) == 0


def test_a_full_count_settles_the_bucket():
    _, name = _store()
    usage = Usage()
    usage.note(name, 10, 1)
    usage.settle(name)
    assert usage.pending_bytes(name) == 0


def test_two_ledgers_never_see_each_others_writes():
    # Two apps in one process (tests, an embedding program): A's flush must not take B's
    # writes into A's store, where the UPDATE matches no row and they would be lost.
    session_a, name = _store()
    a, b = Usage(), Usage()
    b.note(name, 40, 2)
    assert a.pending_bytes(name) == 0
    forget = a.flush(session_a)
    session_a.commit()
    forget()
    assert b.pending_bytes(name) == 40
    row = session_a.scalars(select(StorageBucket).where(StorageBucket.name == name)).one()
    assert (row.used_bytes, row.objects) == (100, 1)  # nothing of B's landed in A's store
    a.settle(name)
    assert b.pending_bytes(name) == 40
