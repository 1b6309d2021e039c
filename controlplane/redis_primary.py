"""For application code: a Redis client that follows the primary the control plane's
catalog names, so a failover needs no restart.

    resolver = PrimaryResolver("http://127.0.0.1:8000", token, "redis")
    r = primary_redis(resolver, db=0)
    r.set("k", "v")          # after a failover, the next command goes to the new primary

The resolver caches the primary; a watcher thread holds a blocking query on the
service (it returns the moment the catalog changes). When the primary moves, each
connection to another address is shut down (not closed: the thread using it owns it), so a
command waiting on the old primary wakes with a ConnectionError and its retry reconnects,
and a connection taken from the pool checks its address before its next command. A
connection that fails or meets a read-only replica asks the control plane again before
the retry."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import weakref
from urllib.parse import quote

import redis
import urllib3
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, TimeoutError
from redis.retry import Retry

log = logging.getLogger("coreplane.client")


class NoPrimary(RedisConnectionError):
    """The catalog names no healthy primary for the service (yet)."""


class PrimaryResolver:
    def __init__(self, control_plane_url: str, token: str, service: str, *, watch: bool = True) -> None:
        self.url = f"{control_plane_url.rstrip('/')}/api/v1/services/{quote(service, safe='')}"
        self.service = service
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http = urllib3.PoolManager(maxsize=2, retries=False)
        self._lock = threading.Lock()
        self._primary: tuple[str, int] | None = None
        self._index = 0
        self.connections: weakref.WeakSet[FollowingConnection] = weakref.WeakSet()
        self._stop = threading.Event()
        if watch:
            threading.Thread(target=self._watch, name=f"coreplane-watch-{service}", daemon=True).start()

    def _fetch(self, index: int | None, wait_s: float) -> tuple[tuple[str, int] | None, int]:
        fields = {"index": str(index), "wait": str(wait_s)} if index is not None else {"wait": "0"}
        response = self._http.request(
            "GET",
            self.url,
            fields=fields,
            headers=self._headers,
            timeout=urllib3.Timeout(connect=2, read=wait_s + 5),
        )
        if response.status != 200:
            raise NoPrimary(
                f"the control plane answered {response.status} for {self.service}: {response.data[:200]!r}"
            )
        service = json.loads(response.data)
        primaries = [i for i in service["instances"] if i["role"] == "primary" and i["health"] != "critical"]
        if not primaries:
            return None, service["index"]
        host, _, port = primaries[0]["address"].rpartition(":")
        return (host, int(port)), service["index"]

    def primary(self, *, refresh: bool = False) -> tuple[str, int]:
        """(host, port) of the current primary; ``refresh`` asks the control plane now."""
        with self._lock:
            if self._primary is None or refresh:
                primary, index = self._fetch(None, 0)
                self._set(primary, index)
            if self._primary is None:
                raise NoPrimary(f"the catalog names no healthy primary for {self.service!r}")
            return self._primary

    def cached(self) -> tuple[str, int] | None:
        """The primary as last resolved, without asking the control plane."""
        with self._lock:
            return self._primary

    def _set(self, primary: tuple[str, int] | None, index: int) -> None:
        self._index = max(self._index, index)
        if primary is not None and primary != self._primary:
            moved = self._primary is not None
            self._primary = primary
            if moved:
                log.warning("%s: the primary is now %s:%d", self.service, *primary)
                for connection in list(self.connections):
                    connection.wake_unless(primary)

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                primary, index = self._fetch(self._index, 30)
                with self._lock:
                    self._set(primary, index)
                failures = 0
            except (urllib3.exceptions.HTTPError, NoPrimary, ValueError, KeyError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("%s: cannot watch the catalog: %s", self.service, exc)
                self._stop.wait(min(0.2 * 2**failures, 5.0))

    def close(self) -> None:
        self._stop.set()


class FollowingConnection(redis.Connection):
    """Connects to whatever the resolver names as the primary at connect time."""

    def __init__(self, *, resolver: PrimaryResolver, **kwargs) -> None:
        self.resolver = resolver
        self._failed = False
        super().__init__(**kwargs)
        resolver.connections.add(self)

    def wake_unless(self, primary: tuple[str, int]) -> None:
        """From the resolver's thread: if this connection is to another server, shut its
        socket down. A read waiting on it returns at once and redis-py raises a
        ConnectionError, which the command's retry follows to ``primary``. Closing it here
        instead would pull the file out from under the thread reading it."""
        sock = self._sock
        if sock is not None and (self.host, self.port) != primary:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        # Every way redis-py opens a socket (connect(), and send_packed_command on a
        # connection dropped mid-command) comes through here, so each attempt goes to the
        # primary named now; connect() and the command's Retry repeat it through a failover.
        if self._sock:
            if (self.host, self.port) == self.resolver.cached():
                return
            self.disconnect()  # the primary moved while this connection sat idle
        self.host, self.port = self.resolver.primary(refresh=self._failed)
        try:
            super().connect_check_health(check_health=check_health, retry_socket_connect=False)
        except (RedisConnectionError, TimeoutError):
            self._failed = True  # ask the control plane, not the cache, on the retry
            raise
        self._failed = False

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except ReadOnlyError:
            # A replica now: the primary moved. Reconnect through the control plane.
            self._failed = True
            self.disconnect()
            raise RedisConnectionError(f"{self.host}:{self.port} is no longer the primary") from None


def primary_redis(resolver: PrimaryResolver, *, retries: int = 40, **kwargs) -> redis.Redis:
    """A redis.Redis on the resolver's primary, retrying through a failover (by default
    about 10 s of capped backoff) instead of raising into application code."""
    # Retries live on the connections (redis-py runs each command through its connection's Retry).
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.02), retries)
    pool = redis.ConnectionPool(
        connection_class=FollowingConnection, resolver=resolver, retry=retry,
        retry_on_error=[RedisConnectionError, TimeoutError, ReadOnlyError], **kwargs,
    )  # fmt: skip
    return redis.Redis(connection_pool=pool)
