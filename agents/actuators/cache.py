"""Cache flush by key, prefix or tag, in Redis and Memcached.

Tags use version counters in Redis (``coreplane:tag:<name>``): bumping one invalidates
every cached key stamped with the old version, in O(1) (the cache library reads them).
Memcached cannot list keys, so a prefix flush there is refused with that reason.
"""

from __future__ import annotations

from typing import Any

import redis
from pymemcache.client.hash import HashClient

from agents.actuators import ActuatorError

TAG_KEY = "coreplane:tag:{}"


def flush(params: dict[str, Any]) -> dict[str, Any]:
    keys: list[str] = list(params.get("keys") or [])
    prefix: str | None = params.get("prefix")
    tags: list[str] = list(params.get("tags") or [])
    if not (keys or prefix or tags):
        raise ActuatorError("give keys, prefix or tags to flush")
    if prefix and params.get("memcached_servers"):
        # Refused before touching anything, so the action never half-applies.
        raise ActuatorError("Memcached cannot flush by prefix (it cannot list keys): use keys or tags")
    out: dict[str, Any] = {}
    if params.get("redis_url"):
        client = redis.Redis.from_url(params["redis_url"], socket_timeout=5)
        try:
            removed = client.unlink(*keys) if keys else 0
            if prefix:
                batch = []
                for key in client.scan_iter(match=f"{_escape(prefix)}*", count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        removed += client.unlink(*batch)
                        batch = []
                if batch:
                    removed += client.unlink(*batch)
            versions = {tag: client.incr(TAG_KEY.format(tag)) for tag in tags}
        finally:
            client.close()
        out["redis"] = {"removed": removed, "tag_versions": versions}
    if params.get("memcached_servers"):
        nodes = [(h, int(p)) for h, _, p in (s.rpartition(":") for s in params["memcached_servers"])]
        # Acknowledged deletes: the action reports what really happened.
        client = HashClient(nodes, connect_timeout=5, timeout=5, default_noreply=False)
        try:
            existed = sum(1 for key in keys if client.delete(key, noreply=False))
        finally:
            client.close()
        out["memcached"] = {"deleted": existed, "absent": len(keys) - existed}
    if not out:
        raise ActuatorError("give redis_url and/or memcached_servers")
    return out


def _escape(prefix: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix)
