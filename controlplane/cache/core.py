"""The multi-layer cache: any stack of layers (in-process, Memcached, Redis) read top to
bottom, a hit lower down filling the layers above; tags and prefixes checked against
version counters kept current by the invalidation broadcast; single-flight per key and
an optional lease across processes against stampedes; stale-while-revalidate; a layer
that fails is skipped (counted, logged at most once a minute) and tried again shortly.

An entry is ``header + b"\\n" + payload``: the header (JSON) holds the tag versions the
entry was written under and, with stale-while-revalidate, when it turns stale."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controlplane.cache import invalidation
from controlplane.cache.layers import Layer, MemoryLayer, pool_exhausted
from controlplane.cache.serializers import Serializer, serializer
from controlplane.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("coreplane.cache")
STATS_KEY = "coreplane:cache:stats:"


class CacheError(Exception):
    """A layer failed and the cache is strict."""


@dataclass
class LayerStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0
    busy: int = 0  # calls that went without the layer: its client's pool had no connection free
    seconds: float = 0.0  # time spent in the layer's reads

    def as_dict(self) -> dict[str, float | None]:
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors, "busy": self.busy,
                "hit_ratio": self.hits / total if total else None, "read_seconds": self.seconds}  # fmt: skip


@dataclass
class _Slot:
    """A layer in the stack, with its TTL cap, health and figures."""

    layer: Layer
    ttl_s: float
    stats: LayerStats = field(default_factory=LayerStats)
    down_until: float = 0.0


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Cache:
    def __init__(
        self,
        layers: list[tuple[Layer, float]] | None = None,
        *,
        namespace: str = "default",
        redis=None,  # tag versions, leases, broadcast
        serializer_name: str = "json",
        allow_pickle: bool = False,
        jitter: float = 0.1,
        strict: bool = False,
        retry_after_s: float = 1.0,
        subscribe: bool = True,
        report_every_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``layers``: (layer, max TTL in seconds) top to bottom; by default one in-process
        layer (on ``clock``). ``redis`` (a redis.Redis) enables tags, prefixes, leases and the
        broadcast. ``clock`` times stale-while-revalidate and a failed layer's time out; waits
        on other processes (a lease, the broadcast) and Redis's own TTLs keep real time."""
        self.clock = clock
        default = [(MemoryLayer(clock=clock), 300.0)]
        self.slots = [_Slot(layer, ttl) for layer, ttl in (layers or default)]
        self.namespace = namespace
        self.redis = redis
        self.serializer: Serializer = serializer(serializer_name, allow_pickle=allow_pickle)
        self.jitter, self.strict, self.retry_after_s = jitter, strict, retry_after_s
        self.memory = next((s.layer for s in self.slots if isinstance(s.layer, MemoryLayer)), None)
        self._versions: dict[str, int] = {}  # tag -> version, kept current by the broadcast
        self._versions_lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()
        self._logged: dict[str, float] = {}
        self.tag_stats = LayerStats()
        self.loads = 0  # loader calls, for operators and tests
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.synced = redis is None
        self.report_every_s = report_every_s
        self._reported_at = 0.0
        if redis is not None and subscribe:
            self._listener = threading.Thread(target=self._listen, name=f"cache-{namespace}", daemon=True)
            self._listener.start()
            self.wait_synced(5.0)

    # --- keys, entries, versions ------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _tags(self, key: str, tags: Iterable[str]) -> list[str]:
        return [*tags, *invalidation.implicit_tags(self.namespace, key)]

    def _current_versions(self, tags: list[str]) -> list[int] | None:
        """Tag versions, from the local map (kept current by the broadcast) or Redis; None
        when they cannot be known (Redis unreachable): such entries are not trusted."""
        if not tags:
            return []
        if self.redis is None:
            return [0] * len(tags)
        with self._versions_lock:
            if self.synced and all(t in self._versions for t in tags):
                return [self._versions[t] for t in tags]
        try:
            values = self.redis.mget([invalidation.TAG_KEY.format(t) for t in tags])
        except Exception as exc:  # noqa: BLE001 - Redis unreachable
            self._failed(None, exc)
            # Availability first: nobody can invalidate without Redis, so the last versions we
            # knew still hold (on reconnecting everything local is dropped and read again).
            with self._versions_lock:
                if all(t in self._versions for t in tags):
                    return [self._versions[t] for t in tags]
            return None
        versions = [int(v or 0) for v in values]
        with self._versions_lock:
            for tag, version in zip(tags, versions, strict=True):
                self._versions[tag] = max(version, self._versions.get(tag, 0))
        return versions

    def _pack(self, value: Any, tags: list[str], versions: list[int], stale_at: float | None) -> bytes:
        header: dict[str, object] = {"t": dict(zip(tags, versions, strict=True))} if tags else {}
        if stale_at is not None:
            header["s"] = stale_at
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.serializer.dumps(value)

    def _unpack(self, data: bytes) -> tuple[Any, bool] | None:
        """(value, stale) of a valid entry; None when a tag moved on since it was written."""
        head, _, payload = data.partition(b"\n")
        header = json.loads(head) if head != b"{}" else {}
        tags = header.get("t")
        if tags:
            current = self._current_versions(list(tags))
            if current is None or current != list(tags.values()):
                return None
        stale_at = header.get("s")
        return self.serializer.loads(payload), stale_at is not None and self.clock.time() >= stale_at

    # --- layers, with failure handling -------------------------------------------------------

    def _failed(self, slot: _Slot | None, exc: Exception) -> None:
        """Count and (at most once a minute per layer) log a failure; skip the layer for
        ``retry_after_s``. ``slot`` None: Redis as the keeper of tags and leases.

        A client whose pool had no connection free is busy, not down: only this call goes
        without the layer (a miss, a write not made), even when strict, and the layer stays
        in use. Setting it aside would turn a burst of callers into errors for everyone."""
        name = slot.layer.name if slot else "redis (tags)"
        stats = slot.stats if slot else self.tag_stats
        if pool_exhausted(exc):
            stats.busy += 1
            self._log_once(
                f"{name} pool", "%s has no free connection (this call goes without it): %s", name, exc
            )
            return
        stats.errors += 1
        if slot is not None:
            slot.down_until = self.clock.monotonic() + self.retry_after_s
        self._log_once(name, "%s failed (skipped for %gs): %s", name, self.retry_after_s, exc)
        if self.strict:
            raise CacheError(f"{name}: {exc}") from exc

    def _log_once(self, what: str, message: str, *args: object) -> None:
        """Log at most once a minute per ``what``: a layer down fails every call."""
        now = self.clock.monotonic()
        if now - self._logged.get(what, -61.0) > 60:
            self._logged[what] = now
            log.warning("cache %s: " + message, self.namespace, *args)

    def _usable(self, slot: _Slot) -> bool:
        return slot.down_until <= self.clock.monotonic()

    def _ttl(self, slot: _Slot, ttl_s: float) -> float:
        ttl = min(ttl_s, slot.ttl_s)
        return ttl * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - spreading expiries

    def _write(self, upto: int, items: dict[str, bytes], ttl_s: float) -> None:
        for slot in self.slots[:upto]:
            if not self._usable(slot):
                continue
            try:
                slot.layer.set_many(items, self._ttl(slot, ttl_s))
            except Exception as exc:  # noqa: BLE001 - a layer down is skipped
                self._failed(slot, exc)

    def _read(
        self, full_keys: list[str], start: int = 0, stop: int | None = None
    ) -> dict[str, tuple[Any, bool]]:
        """Valid entries for ``full_keys`` from the highest layer (of ``slots[start:stop]``)
        that has them; the layers above a hit are filled (with the TTL they would have had,
        capped per layer)."""
        found: dict[str, tuple[Any, bool]] = {}
        wanted = list(full_keys)
        for depth, slot in enumerate(self.slots[start:stop], start):
            if not wanted:
                break
            if not self._usable(slot):
                continue
            started = time.perf_counter()
            try:
                raw = slot.layer.get_many(wanted)
            except Exception as exc:  # noqa: BLE001 - a layer down is skipped
                self._failed(slot, exc)
                continue
            slot.stats.seconds += time.perf_counter() - started
            fill = {}
            for key, data in raw.items():
                entry = self._unpack(data)
                if entry is None:
                    continue
                found[key] = entry
                fill[key] = data
            slot.stats.hits += len(fill)
            slot.stats.misses += len(wanted) - len(fill)
            if fill and depth:
                self._write(depth, fill, self.slots[depth].ttl_s)
            wanted = [k for k in wanted if k not in found]
        return found

    # --- the API ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        full = self._key(key)
        memory = self.memory
        if memory is not None and self.slots[0].layer is memory:
            data = memory.get(full)  # the hot path: one dict lookup, no lists
            if data is not None:
                entry = self._unpack(data)
                if entry is not None:
                    self.slots[0].stats.hits += 1
                    return entry[0]
        found = self._read([full])
        return found[full][0] if full in found else default

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found = self._read([self._key(k) for k in keys])
        return {k: found[self._key(k)][0] for k in keys if self._key(k) in found}

    def set(
        self, key: str, value: Any, ttl_s: float = 300.0, tags: Iterable[str] = (), stale_ttl_s: float = 0
    ) -> bool:
        """Store ``value`` in every layer; False when its tag versions cannot be known
        (Redis unreachable) and it was therefore not cached."""
        return self.set_many({key: value}, ttl_s, tags, stale_ttl_s)

    def set_many(
        self, values: dict[str, Any], ttl_s: float = 300.0, tags: Iterable[str] = (), stale_ttl_s: float = 0
    ) -> bool:
        tags = list(tags)
        items = {}
        for key, value in values.items():
            all_tags = self._tags(key, tags)
            versions = self._current_versions(all_tags)
            if versions is None:
                return False
            items[self._key(key)] = self._pack(
                value, all_tags, versions, self.clock.time() + ttl_s if stale_ttl_s else None
            )
        self._write(len(self.slots), items, ttl_s + stale_ttl_s)
        return True

    def delete(self, key: str) -> None:
        self.invalidate(keys=[key])

    def invalidate(
        self, *, keys: Iterable[str] = (), tags: Iterable[str] = (), prefixes: Iterable[str] = ()
    ) -> dict:
        """Invalidate in every layer and, through Redis, in every process."""
        keys, tags, prefixes = list(keys), list(tags), list(prefixes)
        full = [self._key(k) for k in keys]
        for slot in self.slots:
            if self.redis is not None and slot.layer.name == "redis":
                continue  # invalidation.invalidate removes them there
            try:
                slot.layer.delete_many(full)
            except Exception as exc:  # noqa: BLE001 - a layer down is skipped
                self._failed(slot, exc)
        if self.redis is None:
            if tags or prefixes:
                raise CacheError("invalidating tags or prefixes needs Redis (Cache(redis=...))")
            return {"keys": full}
        result = invalidation.invalidate(
            self.redis, namespace=self.namespace, keys=keys, tags=tags, prefixes=prefixes
        )
        self._apply({"tags": result["tag_versions"], "keys": full})
        return result

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], Any],
        ttl_s: float = 300.0,
        tags: Iterable[str] = (),
        *,
        stale_ttl_s: float = 0,
        lease_s: float = 0,
    ) -> Any:
        """Read through: the cached value, or ``loader()`` stored. Concurrent callers in this
        process share one load; with ``lease_s`` (and Redis) one process loads while the
        others wait for its value up to that long; with ``stale_ttl_s`` a value past its TTL
        is served for that much longer while one caller refreshes it in the background."""
        tags = list(tags)
        full = self._key(key)
        load = (key, loader, ttl_s, tags, stale_ttl_s, lease_s)
        # Every caller looks in the in-process layer; only the flight's leader goes lower. A
        # stampede of N threads then needs one pooled connection, not N: N once emptied
        # redis-py's pool, and the Redis layer was set aside for everyone.
        local = 1 if self.memory is not None and self.slots[0].layer is self.memory else 0
        found, led = self._read([full], stop=local), True
        if full in found:
            value, stale = found[full]
        else:
            (value, stale), led = self._flight(key, lambda: self._read_or_load(*load, start=local))
        if stale and led and key not in self._flights:  # one refresh, not one per waiter
            threading.Thread(
                target=self._flight, args=(key, lambda: (self._load(*load), False)), daemon=True
            ).start()
        return value

    def _read_or_load(
        self,
        key: str,
        loader: Callable[[], Any],
        ttl_s: float,
        tags: list[str],
        stale_ttl_s: float,
        lease_s: float,
        *,
        start: int,
    ) -> tuple[Any, bool]:
        """The flight leader's work: the layers from ``start`` down, else a load."""
        full = self._key(key)
        found = self._read([full], start=start)
        if full in found:
            return found[full]
        return self._load(key, loader, ttl_s, tags, stale_ttl_s, lease_s), False

    def _flight(self, key: str, work: Callable[[], Any]) -> tuple[Any, bool]:
        """Single-flight: the first caller runs ``work``, the others wait on its event (no
        connection held) and share its outcome. Returns (outcome, whether we ran it)."""
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value, False
        try:
            flight.value = work()
            return flight.value, True
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flights_lock:
                del self._flights[key]
            flight.done.set()

    def _load(self, key: str, loader, ttl_s, tags, stale_ttl_s, lease_s) -> Any:
        full = self._key(key)
        lease_key, token = f"coreplane:lease:{full}", uuid.uuid4().hex
        holder = True
        if lease_s and self.redis is not None:
            try:
                holder = bool(self.redis.set(lease_key, token, nx=True, px=int(lease_s * 1000)))
            except Exception as exc:  # noqa: BLE001 - no lease without Redis: load ourselves
                self._failed(None, exc)
            if not holder:
                # Real time, not self.clock: this waits on another process's load.
                deadline = time.monotonic() + lease_s
                while time.monotonic() < deadline:
                    found = self._read([full])
                    if full in found:
                        return found[full][0]
                    time.sleep(0.01)
        # Versions before loading: an invalidation during the load leaves the entry invalid.
        all_tags = self._tags(key, tags)
        versions = self._current_versions(all_tags)
        self.loads += 1
        value = loader()
        if versions is not None:
            stale_at = self.clock.time() + ttl_s if stale_ttl_s else None
            self._write(
                len(self.slots), {full: self._pack(value, all_tags, versions, stale_at)}, ttl_s + stale_ttl_s
            )
        if lease_s and holder and self.redis is not None:
            try:
                # Release only our own lease (it may have expired and been taken since).
                if self.redis.get(lease_key) == token.encode():
                    self.redis.delete(lease_key)
            except Exception as exc:  # noqa: BLE001
                self._failed(None, exc)
        return value

    # --- the broadcast -----------------------------------------------------------------------

    def _apply(self, message: dict) -> None:
        with self._versions_lock:
            for tag, version in message.get("tags", {}).items():
                self._versions[tag] = max(int(version), self._versions.get(tag, 0))
        if self.memory is not None and message.get("keys"):
            self.memory.delete_many(message["keys"])

    def wait_synced(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.synced and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.synced

    def _listen(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(invalidation.CHANNEL)
                pubsub.get_message(timeout=1.0)  # the subscribe confirmation
                # Whatever was bumped while we were not listening is unknown: start over.
                with self._versions_lock:
                    self._versions.clear()
                if self.memory is not None:
                    self.memory.clear()
                self.synced, failures = True, 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self._apply(json.loads(message["data"]))
                    self._report()
            except Exception as exc:  # noqa: BLE001 - Redis gone: versions unknown until back
                self.synced = False
                failures += 1
                if failures == 1:
                    log.warning("cache %s lost the invalidation broadcast: %s", self.namespace, exc)
                self._stop.wait(min(0.1 * 2**failures, 5.0))
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    pubsub.close()

    def _report(self) -> None:
        """Every ``report_every_s``, this process's figures into Redis, where the agent's
        ``cache`` collector sums them per namespace and layer (they expire with the process)."""
        now = time.monotonic()
        if not self.report_every_s or now - self._reported_at < self.report_every_s:
            return
        self._reported_at = now
        key = f"{STATS_KEY}{self.namespace}:{socket.gethostname()}:{os.getpid()}"
        try:
            self.redis.set(key, json.dumps(self.stats()), ex=max(1, int(3 * self.report_every_s)))
        except Exception as exc:
            if not pool_exhausted(exc):
                raise  # Redis gone: the listener starts over
            # A busy pool is no reason to drop every process-local entry: report next time.

    def close(self) -> None:
        """Stop listening (before the caller closes the Redis client it lent us)."""
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=3)

    # --- figures ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        layers = {slot.layer.name: slot.stats.as_dict() for slot in self.slots}
        layers["tags"] = {"errors": self.tag_stats.errors, "busy": self.tag_stats.busy}
        if self.memory is not None:
            entries, size = self.memory.size()
            layers["memory"] |= {"entries": entries, "bytes": size, "evictions": self.memory.evictions}
        return {"namespace": self.namespace, "layers": layers, "loads": self.loads, "synced": self.synced}
