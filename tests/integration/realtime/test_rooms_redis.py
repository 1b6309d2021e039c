"""RedisRooms on the real Redis: one sequence per room that concurrent writers never give
twice nor skip, history bounded by count (exact MAXLEN) and age, presence that expires
and is announced gone by exactly one process, the rooms' listing; and a Redis that does
not answer gives clients an error frame, not a dead socket. Each test keeps its keys
under its own prefix and deletes them after."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from controlplane.realtime.rooms import RedisRooms
from tests.support.processes import free_port
from tests.support.realtime import Client, mint, redis_url, room, rt_serve, ws_url

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix():
    """A key prefix of this test's own; its keys are deleted after."""
    name = f"coreplane:rt-test:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url())
    try:
        keys = list(client.scan_iter(f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def run(prefix: str, test: Callable[..., Awaitable[None]], count: int = 1000, age_s: float = 3600,
        instances: int = 1) -> None:  # fmt: skip
    """Run ``test`` with ``instances`` RedisRooms sharing ``prefix`` (as separate processes would)."""

    async def go() -> None:
        stores = [RedisRooms(redis_url(), count, age_s, prefix=prefix) for _ in range(instances)]
        try:
            await test(*stores)
        finally:
            for store in stores:
                await store.close()

    asyncio.run(go())


def raw(prefix: str, kind: str, name: str) -> Any:
    """A room key as Redis holds it (not through RedisRooms)."""
    return f"{prefix}:{kind}:{name}"


def test_concurrent_appends_take_every_sequence_once(prefix):
    name = room("seq")

    async def test(one: RedisRooms, two: RedisRooms) -> None:
        async def writer(store: RedisRooms, w: int) -> list[int]:
            return [await store.append(name, f'{{"w":{w},"i":{i}}}', f"w{w}", time.time()) for i in range(50)]

        taken = await asyncio.gather(*(writer(store, w) for w, store in enumerate([one, two, one, two])))
        assert sorted(seq for seqs in taken for seq in seqs) == list(range(1, 201))
        assert all(seqs == sorted(seqs) for seqs in taken)  # each writer sees its own go up
        assert await one.last_seq(name) == await two.last_seq(name) == 200
        stored = await two.since(name, 0, 1000)
        assert [m.seq for m in stored] == list(range(1, 201))
        # each sequence stored with the data its writer gave it
        by_seq = {m.seq: (m.sender, m.data) for m in stored}
        for w, seqs in enumerate(taken):
            for i, seq in enumerate(seqs):
                assert by_seq[seq] == (f"w{w}", f'{{"w":{w},"i":{i}}}')

    run(prefix, test, instances=2)


def test_since_reads_after_a_sequence_in_order_up_to_a_limit(prefix):
    name, other = room("since"), room("since")

    async def test(store: RedisRooms) -> None:
        for i in range(10):
            await store.append(name, str(i), None if i % 2 else "ann", time.time())
        await store.append(other, "x", None, time.time())
        after = await store.since(name, 6, 100)
        assert [(m.seq, m.data) for m in after] == [(7, "6"), (8, "7"), (9, "8"), (10, "9")]
        assert (after[0].sender, after[1].sender) == ("ann", None)
        assert [m.seq for m in await store.since(name, 0, 3)] == [1, 2, 3]
        assert await store.since(name, 10, 100) == []
        assert await store.since(room("none"), 0, 100) == []
        assert await store.last_seqs([name, other, room("none")]) == [10, 1, 0]
        assert await store.last_seqs([]) == []

    run(prefix, test)


def test_history_keeps_exactly_count_messages_and_the_sequence_goes_on(prefix):
    name = room("maxlen")

    async def test(store: RedisRooms) -> None:
        for i in range(25):
            await store.append(name, str(i), None, time.time())
        client = redis.Redis.from_url(redis_url())
        try:
            assert client.xlen(raw(prefix, "log", name)) == 10  # exact MAXLEN, not approximate
        finally:
            client.close()
        assert [m.seq for m in await store.since(name, 0, 100)] == list(range(16, 26))
        assert await store.append(name, "x", None, time.time()) == 26

    run(prefix, test, count=10)


def test_history_drops_messages_older_than_its_age(prefix):
    name = room("age")

    async def test(store: RedisRooms) -> None:
        now = time.time()
        for i in range(3):
            await store.append(name, f"old{i}", None, now - 30)  # stored with an old time
        await store.append(name, "new", None, now)  # trims what is older than its time - age
        assert [(m.seq, m.data) for m in await store.since(name, 0, 100)] == [(4, "new")]
        client = redis.Redis.from_url(redis_url())
        try:
            assert client.xlen(raw(prefix, "log", name)) == 1  # removed from Redis, not just hidden
            assert 0 < client.pttl(raw(prefix, "log", name)) <= 10_000  # a quiet room's log goes
        finally:
            client.close()

    run(prefix, test, age_s=10)


def test_presence_enter_refresh_leave(prefix):
    name = room("who")

    async def test(store: RedisRooms) -> None:
        soon = time.time() + 60
        assert await store.enter(name, "c1", "ann", soon) is True
        assert await store.enter(name, "c1", "ann", soon) is False
        assert await store.enter(name, "c2", "bob|x", soon) is True  # a "|" in a user name is kept
        assert sorted(await store.present(name)) == [("c1", "ann"), ("c2", "bob|x")]
        assert await store.leave(name, "c1", "ann") is True
        assert await store.leave(name, "c1", "ann") is False
        await store.refresh([(name, "c2", "bob|x"), (name, "c9", "zed")], soon + 60)
        client = redis.Redis.from_url(redis_url(), decode_responses=True)
        try:
            who = dict(client.zrange(raw(prefix, "who", name), 0, -1, withscores=True))
            assert who == {"c2|bob|x": pytest.approx(soon + 60)}  # refresh never adds an entry
            assert client.pttl(raw(prefix, "who", name)) > 60_000
        finally:
            client.close()

    run(prefix, test)


def test_an_expired_entry_is_hidden_then_removed_by_exactly_one_of_two_racing_processes(prefix):
    names = [room("gone"), room("gone")]

    async def test(one: RedisRooms, two: RedisRooms) -> None:
        past, future = time.time() - 1, time.time() + 60
        expected = set()
        for name in names:
            for i in range(40):
                await one.enter(name, f"c{i}", f"u{i}", past)
                expected.add((name, f"c{i}", f"u{i}"))
            await one.enter(name, "alive", "ann", future)
        assert await two.present(names[0]) == [("alive", "ann")]
        for _ in range(3):  # three races, so an interleaving that gives one twice would show
            found = await asyncio.gather(one.expired(names), two.expired(names), one.expired(names))
            gone = [entry for entries in found for entry in entries]
            assert len(gone) == len(set(gone))
            expected -= set(gone)
        assert expected == set()
        assert await one.expired(names) == []
        assert await one.present(names[1]) == [("alive", "ann")]

    run(prefix, test, instances=2)


def test_the_listing_shows_recent_rooms_first_with_sequence_and_presence(prefix):
    quiet, busy, stale = room("list"), room("list"), room("list")

    async def test(store: RedisRooms) -> None:
        now = time.time()
        await store.append(quiet, "1", None, now - 20)
        await store.append(busy, "1", None, now - 10)
        await store.append(busy, "2", None, now - 5)
        await store.enter(quiet, "c1", "ann", now + 60)
        await store.enter(quiet, "c2", "bob", now - 1)  # expired: not counted
        await store.touch(stale, now - 7200)  # past the age: dropped from the index
        listed = await store.listing(10)
        assert [(r.room, r.last_seq, r.present) for r in listed] == [(busy, 2, 0), (quiet, 1, 1)]
        assert listed[0].active_at == pytest.approx(now - 5)
        assert [r.room for r in await store.listing(1)] == [busy]
        client = redis.Redis.from_url(redis_url(), decode_responses=True)
        try:
            assert client.zscore(f"{prefix}:rooms", stale) is None
        finally:
            client.close()

    run(prefix, test, age_s=3600)


def test_rooms_whose_redis_does_not_answer_give_unavailable_and_the_connection_stays():
    # The channel layer in memory, history and presence on a Redis address nobody listens on.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with rt_serve(redis=False, realtime__redis_url=dead) as cp:
        name = room("down")

        async def go() -> None:
            client = await Client.open(ws_url(cp, mint(cp, "ann", [name])))
            try:
                refused = await client.call("subscribe", name, timeout=30)
                assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
                published = await client.call("publish", name, data={"a": 1}, timeout=30)
                assert (published["type"], published["code"]) == ("error", "unavailable"), published
                assert (await client.call("ping"))["type"] == "pong"  # still open
            finally:
                await client.close()

        asyncio.run(go())
