"""Redis: role, replicas, replication offset and lag, memory, keyspace, ops, clients, PING."""

from __future__ import annotations

import time

import redis

from agents.collectors import Observation
from agents.collectors.base import Rates
from agents.config import TargetConfig

# What the figures below come from (not "server", "cpu", "errorstats", "modules").
SECTIONS = ("clients", "memory", "persistence", "stats", "replication", "keyspace")


class RedisCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.client = redis.Redis.from_url(
            target.address, socket_timeout=target.timeout_s, socket_connect_timeout=target.timeout_s
        )
        self.rates = Rates()
        self._rdb: bool | None = None
        self._rdb_checked = 0.0

    def collect(self) -> Observation:
        started = time.perf_counter()
        self.client.ping()
        rtt = time.perf_counter() - started
        info = self.client.info(*SECTIONS)
        obs = Observation()
        role = info["role"]
        obs.role = "primary" if role == "master" else "replica"
        obs.add("coreplane_redis_ping_seconds", rtt)
        obs.add("coreplane_redis_up", 1, role=role)
        obs.add("coreplane_redis_is_primary", 1 if role == "master" else 0)
        obs.add("coreplane_redis_connected_replicas", info.get("connected_slaves", 0))
        obs.add("coreplane_redis_replication_offset", info.get("master_repl_offset"))
        if role == "slave":
            obs.add("coreplane_redis_replica_offset", info.get("slave_repl_offset"))
            obs.add(
                "coreplane_redis_primary_link_up",
                1 if info.get("master_link_status") == "up" else 0,
            )
            lag = info.get("master_last_io_seconds_ago")
            obs.add(
                "coreplane_redis_replication_lag_seconds",
                lag if lag is not None and lag >= 0 else None,
            )
            if info.get("master_link_status") != "up":
                # Degraded, not down: it still serves reads, and it is what a failover promotes.
                obs.status, obs.message = "warning", "replica lost its primary link"
        else:
            for key, value in info.items():
                if key.startswith("slave") and isinstance(value, dict) and "offset" in value:
                    replica = f"{value.get('ip')}:{value.get('port')}"
                    behind = info.get("master_repl_offset", 0) - value["offset"]
                    obs.add("coreplane_redis_replica_lag_bytes", behind, replica=replica)
        obs.add("coreplane_redis_used_memory_bytes", info.get("used_memory"))
        obs.add("coreplane_redis_maxmemory_bytes", info.get("maxmemory"))
        hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
        obs.add("coreplane_redis_keyspace_hits_total", hits)
        obs.add("coreplane_redis_keyspace_misses_total", misses)
        obs.add("coreplane_redis_hit_ratio", hits / (hits + misses) if hits + misses else None)
        obs.add("coreplane_redis_ops_per_second", info.get("instantaneous_ops_per_sec"))
        obs.add(
            "coreplane_redis_commands_per_second",
            self.rates.rate("cmds", info.get("total_commands_processed")),
        )
        obs.add("coreplane_redis_evicted_keys_total", info.get("evicted_keys"))
        obs.add("coreplane_redis_connected_clients", info.get("connected_clients"))
        obs.add(
            "coreplane_redis_keys",
            sum(v.get("keys", 0) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)),
        )
        obs.add("coreplane_redis_persistence_enabled", 1 if info.get("aof_enabled") else 0, mode="aof")
        rdb = self._rdb_enabled()
        persisted = info.get("aof_enabled") or rdb
        if rdb is not None:
            obs.add("coreplane_redis_persistence_enabled", 1 if rdb else 0, mode="rdb")
        if not obs.message:
            kind = "replica" if role == "slave" else "primary"
            obs.message = f"{kind}, {info.get('connected_slaves', 0)} replica(s)"
            if not persisted:
                obs.message += ", unpersisted"
        return obs

    def _rdb_enabled(self) -> bool | None:
        """Whether RDB snapshots are configured (None when CONFIG is not allowed)."""
        if self._rdb is None or self._rdb_checked + 60 < time.monotonic():
            try:
                self._rdb = bool(self.client.config_get("save").get("save"))
            except redis.ResponseError:
                self._rdb = None
            self._rdb_checked = time.monotonic()
        return self._rdb

    def close(self) -> None:
        self.client.close()
