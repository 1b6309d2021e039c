"""PostgreSQL: connections by state, commit/rollback rate, cache hit ratio, replication
lag, database size, oldest transaction age."""

from __future__ import annotations

from typing import Any

import psycopg

from agents.collectors import Observation
from agents.collectors.base import Rates
from agents.config import TargetConfig


class PostgresCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.dsn = target.address.replace("postgresql+psycopg://", "postgresql://")
        self.timeout = target.timeout_s
        self.rates = Rates()
        self.conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        """One connection kept between probes (a new one per second would cost both sides)."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(self.dsn, connect_timeout=max(1, int(self.timeout)), autocommit=True)
            self.conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
            self.conn.execute("SET application_name = 'coreplane-agent'")
        return self.conn

    def collect(self) -> Observation:
        obs = Observation()
        try:
            return self._collect(obs)
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            raise

    def _collect(self, obs: Observation) -> Observation:
        conn = self._connection()
        for state, count in conn.execute(
            "SELECT coalesce(state, 'background'), count(*) FROM pg_stat_activity GROUP BY 1"
        ):
            obs.add("coreplane_postgres_connections", count, state=state)
        commits, rollbacks, hit, read, size = _row(
            conn,
            "SELECT xact_commit, xact_rollback, blks_hit, blks_read, pg_database_size(datname) "
            "FROM pg_stat_database WHERE datname = current_database()",
        )
        obs.add("coreplane_postgres_commits_per_second", self.rates.rate("commit", commits))
        obs.add("coreplane_postgres_rollbacks_per_second", self.rates.rate("rollback", rollbacks))
        obs.add("coreplane_postgres_cache_hit_ratio", hit / (hit + read) if hit + read else None)
        obs.add("coreplane_postgres_database_size_bytes", size)
        oldest = _row(
            conn,
            "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) "
            "FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()",
        )[0]
        obs.add("coreplane_postgres_oldest_transaction_seconds", oldest)
        in_recovery = _row(conn, "SELECT pg_is_in_recovery()")[0]
        obs.add("coreplane_postgres_is_primary", 0 if in_recovery else 1)
        if in_recovery:
            lag = _row(
                conn, "SELECT coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)"
            )[0]
            obs.add("coreplane_postgres_replication_lag_seconds", lag)
        for client, lag_bytes in (
            conn.execute(
                "SELECT coalesce(client_addr::text, application_name), "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
            )
            if not in_recovery
            else []
        ):
            obs.add("coreplane_postgres_replica_lag_bytes", lag_bytes, replica=client)
        version = _row(conn, "SHOW server_version")[0]
        obs.add("coreplane_postgres_up", 1)
        obs.message = f"PostgreSQL {version}, {'replica' if in_recovery else 'primary'}"
        return obs

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _row(conn: psycopg.Connection, query: str) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    assert row is not None  # these queries (aggregates, SHOW, a function) always return one row
    return row
