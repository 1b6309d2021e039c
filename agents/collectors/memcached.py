"""Memcached: hits, misses, evictions, items, bytes, connections (one target per node)."""

from __future__ import annotations

from pymemcache.client.base import Client

from agents.collectors import Observation
from agents.config import TargetConfig


class MemcachedCollector:
    def __init__(self, target: TargetConfig) -> None:
        host, _, port = target.address.rpartition(":")
        self.client = Client((host, int(port)), connect_timeout=target.timeout_s, timeout=target.timeout_s)

    def collect(self) -> Observation:
        stats = {k.decode(): v for k, v in self.client.stats().items()}
        obs = Observation()
        hits, misses = stats.get("get_hits", 0), stats.get("get_misses", 0)
        obs.add("coreplane_memcached_up", 1)
        obs.add("coreplane_memcached_get_hits_total", hits)
        obs.add("coreplane_memcached_get_misses_total", misses)
        obs.add("coreplane_memcached_hit_ratio", hits / (hits + misses) if hits + misses else None)
        obs.add("coreplane_memcached_evictions_total", stats.get("evictions"))
        obs.add("coreplane_memcached_items", stats.get("curr_items"))
        obs.add("coreplane_memcached_bytes", stats.get("bytes"))
        obs.add("coreplane_memcached_limit_bytes", stats.get("limit_maxbytes"))
        obs.add("coreplane_memcached_connections", stats.get("curr_connections"))
        version = stats.get("version", b"")
        obs.message = f"memcached {version.decode() if isinstance(version, bytes) else version}"
        return obs

    def close(self) -> None:
        self.client.close()
