"""MemoryRooms, the embedded default's rooms (one process): sequences, bounded history,
presence with expiry, the listing. Pure logic, no Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from controlplane.realtime.rooms import MemoryRooms
from controlplane.settings import RealtimeSettings


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _append(rooms: MemoryRooms, room: str, n: int, ts: float | None = None) -> list[int]:
    return [await rooms.append(room, f'{{"n":{i}}}', "ann", ts or time.time()) for i in range(n)]


def test_sequences_count_up_from_one_per_room():
    async def go():
        rooms = MemoryRooms(100, 3600)
        assert await _append(rooms, "a", 3) == [1, 2, 3]
        assert await _append(rooms, "b", 2) == [1, 2]
        assert (await rooms.last_seq("a"), await rooms.last_seq("nobody")) == (3, 0)
        assert await rooms.last_seqs(["b", "a", "nobody"]) == [2, 3, 0]

    run(go())


def test_since_gives_what_came_after_in_order_up_to_a_limit():
    async def go():
        rooms = MemoryRooms(100, 3600)
        await _append(rooms, "a", 10)
        after = await rooms.since("a", 4, 100)
        assert [m.seq for m in after] == [5, 6, 7, 8, 9, 10]
        assert (after[0].data, after[0].sender) == ('{"n":4}', "ann")
        assert [m.seq for m in await rooms.since("a", 4, 2)] == [5, 6]
        assert await rooms.since("a", 10, 100) == []
        assert await rooms.since("nobody", 0, 100) == []

    run(go())


def test_history_keeps_the_last_count_messages_and_the_sequence_goes_on():
    async def go():
        rooms = MemoryRooms(5, 3600)
        await _append(rooms, "a", 12)
        assert [m.seq for m in await rooms.since("a", 0, 100)] == [8, 9, 10, 11, 12]
        assert await rooms.append("a", "1", None, time.time()) == 13

    run(go())


def test_history_drops_messages_older_than_its_age():
    async def go():
        rooms = MemoryRooms(100, 60)
        now = time.time()
        await rooms.append("a", "1", None, now - 120)  # stored, but already past the age
        await rooms.append("a", "2", None, now - 30)
        await rooms.append("a", "3", None, now)
        assert [m.seq for m in await rooms.since("a", 0, 100)] == [2, 3]

    run(go())


def test_presence_enter_leave_and_refresh():
    async def go():
        rooms = MemoryRooms(100, 3600)
        soon = time.time() + 60
        assert await rooms.enter("a", "c1", "ann", soon) is True
        assert await rooms.enter("a", "c1", "ann", soon) is False  # already there
        assert await rooms.enter("a", "c2", "bob", soon) is True
        assert sorted(await rooms.present("a")) == [("c1", "ann"), ("c2", "bob")]
        assert await rooms.leave("a", "c1", "ann") is True
        assert await rooms.leave("a", "c1", "ann") is False
        assert await rooms.leave("nobody", "c1", "ann") is False
        assert await rooms.present("a") == [("c2", "bob")]
        await rooms.refresh([("a", "c2", "bob"), ("a", "c9", "zed"), ("nobody", "c2", "bob")], soon + 60)
        assert rooms.rooms["a"].who == {("c2", "bob"): soon + 60}  # refresh never adds an entry
        assert "nobody" not in rooms.rooms

    run(go())


def test_expired_entries_leave_presence_once():
    async def go():
        rooms = MemoryRooms(100, 3600)
        now = time.time()
        await rooms.enter("a", "c1", "ann", now - 1)
        await rooms.enter("a", "c2", "bob", now + 60)
        await rooms.enter("b", "c3", "cat", now - 1)
        assert await rooms.present("a") == [("c2", "bob")]  # an expired entry is not shown
        assert await rooms.expired(["a", "nobody"]) == [("a", "c1", "ann")]
        assert await rooms.expired(["a", "b"]) == [("b", "c3", "cat")]
        assert await rooms.expired(["a", "b"]) == []
        await rooms.refresh([("a", "c1", "ann")], now + 60)  # gone: not brought back
        assert await rooms.present("a") == [("c2", "bob")]

    run(go())


def test_the_listing_shows_active_rooms_most_recent_first_with_their_figures():
    async def go():
        rooms = MemoryRooms(100, 3600)
        now = time.time()
        await rooms.append("old", "1", None, now - 10)
        await rooms.append("new", "1", None, now)
        await rooms.append("new", "2", None, now)
        await rooms.enter("old", "c1", "ann", now + 60)
        await rooms.touch("old", now - 5)
        listed = await rooms.listing(10)
        assert [(r.room, r.last_seq, r.present) for r in listed] == [("new", 2, 0), ("old", 1, 1)]
        assert [r.room for r in await rooms.listing(1)] == ["new"]

    run(go())


def test_the_listing_forgets_rooms_quiet_past_the_age_and_empty():
    async def go():
        rooms = MemoryRooms(100, 60)
        now = time.time()
        await rooms.append("quiet", "1", None, now - 120)
        await rooms.append("quiet-but-present", "1", None, now - 120)
        await rooms.enter("quiet-but-present", "c1", "ann", now + 60)
        await rooms.touch("quiet-but-present", now - 120)
        assert [r.room for r in await rooms.listing(10)] == ["quiet-but-present"]

    run(go())


def test_realtime_settings_have_bounds():
    defaults = RealtimeSettings()
    assert (defaults.heartbeat_s, defaults.history_count, defaults.send_queue) == (10.0, 1000, 1000)
    assert defaults.redis_url is None and defaults.schemas == []
    for field, value in [("heartbeat_s", 0.1), ("heartbeat_s", 301), ("token_ttl_s", 9),
                         ("history_count", 0), ("history_count", 100_001), ("history_age_s", 0),
                         ("frame_max_bytes", 255), ("frame_max_bytes", 4 * 1024 * 1024 + 1),
                         ("rate_per_s", 0), ("rate_burst", 0), ("max_subscriptions", 0),
                         ("send_queue", 9), ("abuse_limit", 0), ("max_connections", 0)]:  # fmt: skip
        with pytest.raises(ValidationError) as caught:
            RealtimeSettings(**{field: value})
        assert caught.value.errors()[0]["loc"] == (field,)


def test_realtime_settings_come_from_the_environment(monkeypatch):
    from controlplane.settings import Settings

    monkeypatch.setenv("COREPLANE_REALTIME__HEARTBEAT_S", "2.5")
    monkeypatch.setenv(
        "COREPLANE_REALTIME__SCHEMAS", '[{"room": "chat:*", "json_schema": {"type": "object"}}]'
    )
    settings = Settings().realtime
    assert settings.heartbeat_s == 2.5
    assert settings.schemas == [{"room": "chat:*", "json_schema": {"type": "object"}}]
