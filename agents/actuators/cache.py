"""Cache flush by key, prefix or tag, through the same path as coreplane's cache library
(controlplane.cache): tag and prefix version counters bumped in Redis (O(1), whatever
the number of entries, Memcached included), keys removed from Redis and Memcached, and
the broadcast that makes every process drop its in-process copies."""

from __future__ import annotations

from typing import Any

import redis
from pymemcache.client.hash import HashClient

from agents.actuators import ActuatorError
from controlplane.cache import invalidation
from controlplane.cache.layers import memcached_key


def flush(params: dict[str, Any]) -> dict[str, Any]:
    keys: list[str] = list(params.get("keys") or [])
    prefixes = [params["prefix"]] if params.get("prefix") else list(params.get("prefixes") or [])
    tags: list[str] = list(params.get("tags") or [])
    namespace = str(params.get("namespace") or "default")
    if not (keys or prefixes or tags):
        raise ActuatorError("give keys, prefix or tags to flush")
    try:
        for prefix in prefixes:
            invalidation.check_prefix(prefix)
    except ValueError as exc:
        raise ActuatorError(str(exc)) from None
    if not params.get("redis_url"):
        # Refused before touching anything, so the action never half-applies.
        raise ActuatorError("cache invalidation needs the Redis that keeps tag versions (redis_url)")
    out: dict[str, Any] = {}
    client = redis.Redis.from_url(params["redis_url"], socket_timeout=5)
    try:
        out["redis"] = invalidation.invalidate(
            client, namespace=namespace, keys=keys, tags=tags, prefixes=prefixes
        )
    finally:
        client.close()
    if keys and params.get("memcached_servers"):
        nodes = [(h, int(p)) for h, _, p in (s.rpartition(":") for s in params["memcached_servers"])]
        # Acknowledged deletes: the action reports what really happened.
        mc = HashClient(nodes, connect_timeout=5, timeout=5, default_noreply=False)
        try:
            existed = sum(1 for key in keys if mc.delete(memcached_key(f"{namespace}:{key}"), noreply=False))
        finally:
            mc.close()
        out["memcached"] = {"deleted": existed, "absent": len(keys) - existed}
    return out
