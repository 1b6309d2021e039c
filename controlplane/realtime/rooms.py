"""Where rooms keep their history and presence: Redis in production (every process and
every application process sees the same), in memory for one process (`make run`).

History: each room has a sequence (``INCR``) and a stream (``XADD`` with the sequence as the
entry id, exact ``MAXLEN`` from ``history_count``, entries older than ``history_age_s``
dropped as new ones come, the whole stream expiring when the room goes quiet). One Lua script
does it, so a sequence is never given twice nor skipped. docs/decisions/0009 says why a
stream and not a table (bench/realtime.py measures both).

Presence: a sorted set per room of ``<connection>|<user>`` scored by when the entry expires;
the process holding the connection pushes the expiry forward every heartbeat, so a process
that dies leaves entries that expire within two heartbeats and whichever process removes
one first (``ZREM`` answers 1 once) announces the leave.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

_APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-0', 'd', ARGV[2], 'f', ARGV[3], 't', ARGV[4])
local cutoff = tonumber(ARGV[4]) - tonumber(ARGV[5])
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 8)) do
  if tonumber(entry[2][6]) >= cutoff then break end
  redis.call('XDEL', KEYS[2], entry[1])
end
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[5]) * 1000))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
return seq
"""

MAX_ROOMS_LISTED = 500


@dataclass(frozen=True)
class Stored:
    seq: int
    data: str  # JSON text
    sender: str | None
    ts: float


@dataclass(frozen=True)
class RoomInfo:
    room: str
    last_seq: int
    active_at: float
    present: int


class Rooms(Protocol):
    async def append(self, room: str, data: str, sender: str | None, ts: float) -> int: ...
    async def last_seq(self, room: str) -> int: ...
    async def last_seqs(self, rooms: list[str]) -> list[int]: ...
    async def since(self, room: str, after: int, limit: int) -> list[Stored]: ...
    async def present(self, room: str) -> list[tuple[str, str]]: ...  # (connection, user)
    async def present_count(self, room: str) -> int: ...
    async def enter(self, room: str, conn: str, user: str, expires_at: float) -> bool: ...
    async def leave(self, room: str, conn: str, user: str) -> bool: ...
    async def refresh(self, entries: list[tuple[str, str, str]], expires_at: float) -> None: ...
    async def expired(self, rooms: list[str]) -> list[tuple[str, str, str]]: ...  # removed (room, conn, user)
    async def listing(self, limit: int) -> list[RoomInfo]: ...
    async def touch(self, room: str, at: float) -> None: ...
    async def close(self) -> None: ...


class RedisRooms:
    def __init__(
        self, url: str, history_count: int, history_age_s: float, prefix: str = "coreplane:rt"
    ) -> None:
        self.url, self.count, self.age_s, self.prefix = url, history_count, history_age_s, prefix
        # One client per event loop: application code may publish from async_to_sync's loops.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _redis(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A pool that waits for a free connection: redis-py's default one raises "Too many
            # connections" past 100 commands in flight, which a burst of subscribes (1,000
            # members joining a room) reaches, failing publishes and presence with it.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, decode_responses=True, max_connections=100, timeout=10
            )
            client = self._clients[loop] = aioredis.Redis.from_pool(pool)
            client.rt_append = client.register_script(_APPEND)  # type: ignore[attr-defined]
        return client

    def _key(self, kind: str, room: str) -> str:
        return f"{self.prefix}:{kind}:{room}"

    async def append(self, room: str, data: str, sender: str | None, ts: float) -> int:
        redis = self._redis()
        keys = [self._key("seq", room), self._key("log", room), f"{self.prefix}:rooms"]
        return int(
            await redis.rt_append(
                keys=keys, args=[self.count, data, sender or "", repr(ts), self.age_s, room]
            )
        )

    async def last_seq(self, room: str) -> int:
        return int(await self._redis().get(self._key("seq", room)) or 0)

    async def last_seqs(self, rooms: list[str]) -> list[int]:
        if not rooms:
            return []
        values = await self._redis().mget([self._key("seq", r) for r in rooms])
        return [int(v or 0) for v in values]

    async def since(self, room: str, after: int, limit: int) -> list[Stored]:
        entries = await self._redis().xrange(self._key("log", room), min=f"({after}-0", max="+", count=limit)
        cutoff = time.time() - self.age_s
        out = []
        for entry_id, fields in entries:
            ts = float(fields["t"])
            if ts >= cutoff:
                out.append(Stored(int(entry_id.split("-", 1)[0]), fields["d"], fields["f"] or None, ts))
        return out

    async def present(self, room: str) -> list[tuple[str, str]]:
        members = await self._redis().zrangebyscore(self._key("who", room), time.time(), "+inf")
        return [(m.split("|", 1)[0], m.split("|", 1)[1]) for m in members]

    async def present_count(self, room: str) -> int:
        return int(await self._redis().zcount(self._key("who", room), time.time(), "+inf"))

    async def enter(self, room: str, conn: str, user: str, expires_at: float) -> bool:
        return bool(await self._redis().zadd(self._key("who", room), {f"{conn}|{user}": expires_at}))

    async def leave(self, room: str, conn: str, user: str) -> bool:
        return bool(await self._redis().zrem(self._key("who", room), f"{conn}|{user}"))

    async def refresh(self, entries: list[tuple[str, str, str]], expires_at: float) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for room, conn, user in entries:
                pipe.zadd(self._key("who", room), {f"{conn}|{user}": expires_at}, xx=True)
                pipe.pexpire(self._key("who", room), int((expires_at - time.time()) * 1000) + 60_000)
            await pipe.execute()

    async def expired(self, rooms: list[str]) -> list[tuple[str, str, str]]:
        redis, now, gone = self._redis(), time.time(), []
        for room in rooms:
            for member in await redis.zrangebyscore(self._key("who", room), "-inf", now):
                if await redis.zrem(self._key("who", room), member):  # 1 for one process only
                    conn, user = member.split("|", 1)
                    gone.append((room, conn, user))
        return gone

    async def listing(self, limit: int) -> list[RoomInfo]:
        redis, now = self._redis(), time.time()
        index = f"{self.prefix}:rooms"
        await redis.zremrangebyscore(index, "-inf", now - self.age_s)
        rows = await redis.zrevrange(index, 0, min(limit, MAX_ROOMS_LISTED) - 1, withscores=True)
        async with redis.pipeline(transaction=False) as pipe:
            for room, _ in rows:
                pipe.get(self._key("seq", room))
                pipe.zcount(self._key("who", room), now, "+inf")
            figures = await pipe.execute()
        return [
            RoomInfo(room, int(figures[2 * i] or 0), score, int(figures[2 * i + 1]))
            for i, (room, score) in enumerate(rows)
        ]

    async def touch(self, room: str, at: float) -> None:
        await self._redis().zadd(f"{self.prefix}:rooms", {room: at})

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()


@dataclass
class _Room:
    seq: int = 0
    log: deque[Stored] = field(default_factory=deque)
    who: dict[tuple[str, str], float] = field(default_factory=dict)
    active_at: float = 0.0


class MemoryRooms:
    """One process's rooms (the embedded default): the same behaviour, nothing shared."""

    def __init__(self, history_count: int, history_age_s: float) -> None:
        self.count, self.age_s = history_count, history_age_s
        self.rooms: dict[str, _Room] = {}

    def _room(self, room: str) -> _Room:
        found = self.rooms.get(room)
        if found is None:
            found = self.rooms[room] = _Room()
        return found

    async def append(self, room: str, data: str, sender: str | None, ts: float) -> int:
        r = self._room(room)
        r.seq += 1
        r.active_at = ts
        r.log.append(Stored(r.seq, data, sender, ts))
        while len(r.log) > self.count or (r.log and r.log[0].ts < ts - self.age_s):
            r.log.popleft()
        return r.seq

    async def last_seq(self, room: str) -> int:
        found = self.rooms.get(room)
        return found.seq if found else 0

    async def last_seqs(self, rooms: list[str]) -> list[int]:
        return [await self.last_seq(r) for r in rooms]

    async def since(self, room: str, after: int, limit: int) -> list[Stored]:
        found = self.rooms.get(room)
        if found is None:
            return []
        cutoff = time.time() - self.age_s
        return [m for m in found.log if m.seq > after and m.ts >= cutoff][:limit]

    async def present(self, room: str) -> list[tuple[str, str]]:
        now = time.time()
        found = self.rooms.get(room)
        return [key for key, until in found.who.items() if until > now] if found else []

    async def present_count(self, room: str) -> int:
        return len(await self.present(room))

    async def enter(self, room: str, conn: str, user: str, expires_at: float) -> bool:
        r = self._room(room)
        new = (conn, user) not in r.who
        r.who[(conn, user)] = expires_at
        r.active_at = time.time()
        return new

    async def leave(self, room: str, conn: str, user: str) -> bool:
        found = self.rooms.get(room)
        return found is not None and found.who.pop((conn, user), None) is not None

    async def refresh(self, entries: list[tuple[str, str, str]], expires_at: float) -> None:
        for room, conn, user in entries:
            found = self.rooms.get(room)
            if found is not None and (conn, user) in found.who:
                found.who[(conn, user)] = expires_at

    async def expired(self, rooms: list[str]) -> list[tuple[str, str, str]]:
        now, gone = time.time(), []
        for room in rooms:
            found = self.rooms.get(room)
            for (conn, user), until in list(found.who.items()) if found else []:
                if until <= now:
                    del found.who[(conn, user)]  # type: ignore[union-attr]
                    gone.append((room, conn, user))
        return gone

    async def listing(self, limit: int) -> list[RoomInfo]:
        now = time.time()
        for name in [n for n, r in self.rooms.items() if r.active_at < now - self.age_s and not r.who]:
            del self.rooms[name]
        rows = sorted(self.rooms.items(), key=lambda item: item[1].active_at, reverse=True)
        return [
            RoomInfo(name, r.seq, r.active_at, sum(1 for until in r.who.values() if until > now))
            for name, r in rows[: min(limit, MAX_ROOMS_LISTED)]
        ]

    async def touch(self, room: str, at: float) -> None:
        self._room(room).active_at = at

    async def close(self) -> None:
        pass
