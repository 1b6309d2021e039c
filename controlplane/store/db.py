"""Engine and session factory. Callers own transactions (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str) -> Engine:
    """An engine for the store; on SQLite, creates the parent folder and enables WAL."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # SQLAlchemy, not pysqlite, starts transactions (so SAVEPOINT works) ...
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            # ... and takes the write lock up front: a transaction that read and then writes
            # after another one committed would fail at once with "database is locked"
            # (busy_timeout cannot help there); waiting at BEGIN it just queues. (Async routes
            # run their queries off the event loop, so this wait never stalls other requests.)
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def libpq_dsn(database_url: str | URL) -> str:
    """The store's URL as psycopg takes it directly (for connections outside SQLAlchemy's
    pool: the leader's lock, the LISTEN connection)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise if the store does not answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
