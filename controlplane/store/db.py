"""Engine and session factories. Callers own transactions (STYLE.md).

The rule for SQLite (one writer at a time): a transaction that may write begins
``BEGIN IMMEDIATE`` and so takes the write lock up front; a read-only one begins a plain
deferred ``BEGIN`` and never asks for the lock, so under WAL it reads its snapshot while
a writer works instead of queueing behind it (a heavy write once held /readyz, the long
poll and every GET for up to busy_timeout). Read-only work uses ``make_read_sessionmaker``
(or ``read_only(conn)``); SQLite itself refuses a write there (``PRAGMA query_only``), so a
route put on the wrong side fails loudly in its test instead of racing for the lock.
On PostgreSQL both kinds are the same ordinary transaction: readers never block there.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY = "coreplane_read_only"  # the execution option that marks read-only work


def make_engine(database_url: str) -> Engine:
    """An engine for the store; on SQLite, creates the parent folder and enables WAL."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            # SQLAlchemy, not pysqlite, starts transactions (so SAVEPOINT works) ...
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # ... and a writer takes the write lock up front: a transaction that read and then
            # writes after another one committed would fail at once with "database is locked"
            # (busy_timeout cannot help there); waiting at BEGIN it just queues. (Async routes
            # run their queries off the event loop, so this wait never stalls other requests.)
            # A reader takes no lock at all (the module docstring).
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("PRAGMA query_only=ON")
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("PRAGMA query_only=OFF")
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def libpq_dsn(database_url: str | URL) -> str:
    """The store's URL as psycopg takes it directly (for connections outside SQLAlchemy's
    pool: the leader's lock, the LISTEN connection)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that writes (on SQLite: BEGIN IMMEDIATE)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that only reads (on SQLite: deferred BEGIN, writes refused)."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def read_only(conn: Connection) -> Connection:
    """Mark a connection read-only before its first statement (see the module docstring)."""
    return conn.execution_options(**{READ_ONLY: True})


def ping(engine: Engine) -> None:
    """Raise if the store does not answer a trivial query (never waits for the write lock)."""
    with engine.connect() as conn:
        read_only(conn).execute(text("SELECT 1"))
