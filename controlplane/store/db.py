"""Engine and session factory. Callers own transactions (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

WRITER = "coreplane_writer"  # execution option: this engine's transactions will write


def writer(engine: Engine) -> Engine:
    """The same engine (and pool), its transactions taking SQLite's write lock at BEGIN."""
    return engine.execution_options(**{WRITER: True})


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
            # ... and a transaction that reads and then writes while others write (the control
            # loop's round) asks for the write lock up front: otherwise its first write fails at
            # once with "database is locked" when another transaction committed since its read
            # (busy_timeout cannot help there). Readers keep WAL's lock-free reads.
            immediate = conn.get_execution_options().get(WRITER, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise if the store does not answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
