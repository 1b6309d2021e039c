"""Cache layers: in-process (LRU + TTL, bounded by entries and bytes), Memcached across
nodes (pymemcache's HashClient: consistent hashing, a dead node leaves the ring until it
answers again), Redis. Each stores opaque bytes under a full key; the Cache above decides
what the bytes mean."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError

from controlplane.clock import SYSTEM_CLOCK, Clock

# What a client's own connection pool raises when it has nothing to lend: redis-py's pool at
# max_connections (MaxConnectionsError from 5.1, a plain ConnectionError before), its
# BlockingConnectionPool past its timeout, pymemcache's pool at max_pool_size.
POOL_EMPTY = {
    RedisConnectionError: ("Too many connections", "No connection available."),
    RuntimeError: ("Too many objects,",),
}


def pool_exhausted(exc: BaseException) -> bool:
    """True when the client ran out of pooled connections: the client is busy, the backend
    is not down, so the layer must not be set aside for it."""
    return any(
        isinstance(exc, kind) and str(exc).startswith(messages) for kind, messages in POOL_EMPTY.items()
    )


class Layer(Protocol):
    name: str

    def get_many(self, keys: list[str]) -> dict[str, bytes]: ...

    def set_many(self, items: dict[str, bytes], ttl_s: float) -> None: ...

    def delete_many(self, keys: list[str]) -> None: ...


class MemoryLayer:
    """LRU with a TTL per entry, bounded by entry count and total bytes. Entries expire by
    ``clock`` (the real one unless a test passes its own)."""

    name = "memory"

    def __init__(
        self, max_entries: int = 10_000, max_bytes: int = 64 * 2**20, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        now, found = self.clock.monotonic(), {}
        with self._lock:
            for key in keys:
                entry = self._data.get(key)
                if entry is None:
                    continue
                if entry[1] <= now:
                    self._drop(key)
                    continue
                self._data.move_to_end(key)
                found[key] = entry[0]
        return found

    def get(self, key: str) -> bytes | None:
        """One key, the hot path: no list, no dict."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[1] <= self.clock.monotonic():
                self._drop(key)
                return None
            self._data.move_to_end(key)
            return entry[0]

    def set_many(self, items: dict[str, bytes], ttl_s: float) -> None:
        expires = self.clock.monotonic() + ttl_s
        with self._lock:
            for key, data in items.items():
                if len(data) > self.max_bytes:
                    continue  # would evict everything and still not fit
                if key in self._data:
                    self._drop(key)
                self._data[key] = (data, expires)
                self._bytes += len(data)
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                key, (data, _) = self._data.popitem(last=False)
                self._bytes -= len(data)
                self.evictions += 1

    def delete_many(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                if key in self._data:
                    self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def _drop(self, key: str) -> None:
        data, _ = self._data.pop(key)
        self._bytes -= len(data)

    def size(self) -> tuple[int, int]:
        with self._lock:
            return len(self._data), self._bytes


def memcached_key(key: str) -> str:
    """Memcached keys: at most 250 bytes, no spaces or control characters."""
    raw = key.encode()
    if len(raw) <= 200 and all(33 <= b < 127 for b in raw):
        return key
    return "h:" + hashlib.sha256(raw).hexdigest()


class MemcachedLayer:
    name = "memcached"

    def __init__(self, servers: list[str], *, timeout_s: float = 0.5, dead_timeout_s: float = 2.0) -> None:
        from pymemcache.client.hash import HashClient

        nodes = [(host, int(port)) for host, _, port in (s.rpartition(":") for s in servers)]
        # A node that fails leaves the ring for dead_timeout_s, then is tried again:
        # its keys go to the other nodes meanwhile (consistent hashing moves only those).
        self.client = HashClient(
            nodes, connect_timeout=timeout_s, timeout=timeout_s, retry_attempts=1, retry_timeout=0,
            dead_timeout=dead_timeout_s, ignore_exc=False, use_pooling=True, max_pool_size=16, no_delay=True,
        )  # fmt: skip

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        mapped = {memcached_key(k): k for k in keys}
        found = self.client.get_many(list(mapped))
        return {mapped[k]: v for k, v in found.items()}

    def set_many(self, items: dict[str, bytes], ttl_s: float) -> None:
        # Memcached reads an expiry over 30 days as a Unix time; cap below it.
        expire = max(1, min(int(ttl_s), 30 * 24 * 3600))
        self.client.set_many({memcached_key(k): v for k, v in items.items()}, expire=expire, noreply=True)

    def delete_many(self, keys: list[str]) -> None:
        self.client.delete_many([memcached_key(k) for k in keys], noreply=True)

    def close(self) -> None:
        self.client.close()


class RedisLayer:
    name = "redis"

    def __init__(self, client) -> None:
        self.client = client

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        if len(keys) == 1:
            value = self.client.get(keys[0])
            return {} if value is None else {keys[0]: value}
        return {k: v for k, v in zip(keys, self.client.mget(keys), strict=True) if v is not None}

    def set_many(self, items: dict[str, bytes], ttl_s: float) -> None:
        ms = max(1, int(ttl_s * 1000))
        if len(items) == 1:
            ((key, value),) = items.items()
            self.client.set(key, value, px=ms)
            return
        pipe = self.client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(key, value, px=ms)
        pipe.execute()

    def delete_many(self, keys: list[str]) -> None:
        if keys:
            self.client.unlink(*keys)
