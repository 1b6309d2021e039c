"""Leader election among `coreplane serve` processes sharing one PostgreSQL.

The leader holds a session-level advisory lock on a connection of its own: if the
process dies, PostgreSQL ends that session and the lock is free at once; a follower
tries to take it every third of a lease, so it takes over well within two lease
periods. The leader renews a row in ``leader_lease`` (holder, epoch, expiry) as it
goes, which tells the other processes and operators who leads; if it cannot reach the
store to renew, it steps down rather than act on a lock it may have lost.

On SQLite there is one process, and it leads."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from controlplane.clock import utcnow
from controlplane.store.db import libpq_dsn
from controlplane.store.models import LeaderLease

if TYPE_CHECKING:
    import psycopg  # imported where used: SQLite installs need not have it

log = logging.getLogger("coreplane.leader")

# One lock per store: advisory locks are per database, and a database may hold several
# coreplane stores in different schemas (tests, benchmarks, staging next to production).
STORE_KEY = "hashtext('coreplane.leader.' || current_database() || '.' || current_schema())"
LOCK = f"SELECT pg_try_advisory_lock({STORE_KEY})"
LEASE = "engine"


class Leadership:
    def __init__(self, engine: Engine, lease_s: float) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.lease_s = lease_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.is_leader = engine.dialect.name != "postgresql"
        self.epoch = 0
        self._conn: psycopg.Connection | None = None  # the psycopg connection holding the lock

    def renew_every_s(self) -> float:
        return self.lease_s / 3

    def run_once(self) -> bool:
        """Take or keep the lead; returns whether this process leads."""
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            if self._conn is None:
                import psycopg

                self._conn = psycopg.connect(
                    libpq_dsn(self.engine.url), autocommit=True, connect_timeout=max(1, int(self.lease_s))
                )
            if not self.is_leader:
                row = self._conn.execute(LOCK).fetchone()
                if row is None:
                    raise RuntimeError("the lock query returned no row")  # stepping down, as before
                if row[0]:
                    self._take()
            else:
                self._conn.execute("SELECT 1")
                self._renew()
        except Exception as exc:  # noqa: BLE001 - any doubt about the lock means we do not lead
            if self.is_leader:
                log.error("leader %s cannot renew its lease (%s): stepping down", self.holder, exc)
            self.step_down()
        return self.is_leader

    def _take(self) -> None:
        with self.sessions.begin() as session:
            row = session.get(LeaderLease, LEASE, with_for_update=True)
            now = utcnow()
            if row is None:
                row = LeaderLease(name=LEASE, holder=self.holder, epoch=1, acquired_at=now, expires_at=now)
                session.add(row)
            else:
                row.holder, row.epoch, row.acquired_at = self.holder, row.epoch + 1, now
            row.expires_at = now + timedelta(seconds=self.lease_s)
            self.epoch = row.epoch
        self.is_leader = True
        log.warning("%s leads now (epoch %d)", self.holder, self.epoch)

    def _renew(self) -> None:
        with self.sessions.begin() as session:
            row = session.get(LeaderLease, LEASE)
            if row is None or row.holder != self.holder or row.epoch != self.epoch:
                raise RuntimeError(f"the lease row names {row.holder if row else 'nobody'}, not us")
            row.expires_at = utcnow() + timedelta(seconds=self.lease_s)

    def step_down(self) -> None:
        self.is_leader = False
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken
                self._conn.close()  # ends the session: the advisory lock goes with it
            self._conn = None


def current(session: Session) -> dict | None:
    """Who leads, per the lease row (None before anyone led, or on SQLite)."""
    row = session.scalars(select(LeaderLease).where(LeaderLease.name == LEASE)).first()
    if row is None:
        return None
    return {
        "holder": row.holder,
        "epoch": row.epoch,
        "acquired_at": row.acquired_at,
        "expires_at": row.expires_at,
        "live": row.expires_at > utcnow(),
    }
