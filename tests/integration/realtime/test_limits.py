"""`/ws/rt`'s limits against real `coreplane serve` processes on the Redis layer: frame size,
rate, abuse (4429), subscriptions per connection, history bounded by count and by age, and
the idle timeout (4408) that pings keep away."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from websockets.exceptions import ConnectionClosed

from controlplane.realtime import protocol
from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.realtime_protocol import api, close_code, open_in, run
from tests.support.timing import until

FRAME_MAX = 1024
RATE_PER_S, BURST, ABUSE = 4, 8, 10
MAX_SUBS = 3
HISTORY = 10
AGE_S = 4
HEARTBEAT_S = 1


@pytest.fixture(scope="module")
def limited():
    settings = {
        "realtime__frame_max_bytes": str(FRAME_MAX),
        "realtime__rate_per_s": str(RATE_PER_S),
        "realtime__rate_burst": str(BURST),
        "realtime__abuse_limit": str(ABUSE),
        "realtime__max_subscriptions": str(MAX_SUBS),
        # One server for every limit, so a loaded machine starts fewer: short heartbeats and
        # history age too (the tests here keep talking, or use the API, so neither bites).
        "realtime__heartbeat_s": str(HEARTBEAT_S),
        "realtime__history_age_s": str(AGE_S),
    }
    with rt_serve(**settings) as found:
        yield found


@pytest.fixture(scope="module")
def short_history():
    with rt_serve(realtime__history_count=str(HISTORY)) as found:
        yield found


def test_a_frame_over_the_cap_is_refused_and_the_connection_stays(limited):
    name = room("big")

    async def scenario() -> None:
        client = await open_in(limited, mint(limited, "big", [name]), name)
        await client.ws.send(json.dumps({"type": "publish", "room": name, "id": 1, "data": "x" * FRAME_MAX}))
        error = await client.expect("error")
        assert error["code"] == "too_large" and str(FRAME_MAX) in error["message"], error
        fits = await client.call("publish", name, data="y" * (FRAME_MAX // 2))
        assert fits["type"] == "published", fits
        (got,) = await client.messages(name, 1)
        assert got["seq"] == fits["seq"], "the refused frame was never stored"
        await client.close()

    run(scenario())


def test_a_burst_past_the_rate_gets_rate_limited_errors_then_the_bucket_refills(limited):
    async def scenario() -> None:
        client = await Client.open(ws_url(limited, mint(limited, "fast", ["free:*"])))
        sent = 2 * BURST
        for _ in range(sent):
            await client.send("ping")
        answers = [await client.next() for _ in range(sent)]
        pongs = [a for a in answers if a["type"] == "pong"]
        limited_ = [a for a in answers if a["type"] == "error" and a["code"] == "rate_limited"]
        assert len(pongs) + len(limited_) == sent, answers
        # The burst passes whole; the rest mostly not (the bucket refills RATE_PER_S a second).
        assert BURST <= len(pongs) <= BURST + 2, answers
        assert limited_ and all("id" in a for a in limited_), answers
        await asyncio.sleep(1.5 / RATE_PER_S * 2)  # the bucket refills with time, by design
        assert (await client.call("ping"))["type"] == "pong", "the connection outlived the burst"
        await client.close()

    run(scenario())


def test_repeated_abuse_closes_the_connection_4429(limited):
    async def scenario() -> tuple[int, list[dict]]:
        client = await Client.open(ws_url(limited, mint(limited, "abu", ["free:*"])))
        for _ in range(ABUSE + 5):
            await client.ws.send("{not json")
        code = await close_code(client)
        return code, client.inbox

    code, frames = run(scenario())
    assert code == protocol.ABUSE
    errors = [f for f in frames if f.get("type") == "error"]
    assert len(errors) >= ABUSE and all(e["code"] == "invalid_json" for e in errors), frames


def test_subscriptions_past_the_cap_are_refused_until_one_is_left(limited):
    names = [room("subs") for _ in range(MAX_SUBS + 1)]

    async def scenario() -> None:
        client = await open_in(limited, mint(limited, "sub", names), *names[:MAX_SUBS])
        refused = await client.call("subscribe", names[-1])
        assert (refused["code"], refused["field"]) == ("too_many_subscriptions", "room"), refused
        assert (await client.call("unsubscribe", names[0]))["type"] == "unsubscribed"
        assert (await client.call("subscribe", names[-1]))["type"] == "subscribed"
        await client.close()

    run(scenario())


def test_history_keeps_the_last_count_and_a_resume_past_it_says_not_recovered(short_history):
    cp = short_history
    name = room("hist")
    total = 25

    async def scenario() -> None:
        token = mint(cp, "his", [name])
        writer = await Client.open(ws_url(cp, token))
        seqs = [(await writer.call("publish", name, data={"n": n}))["seq"] for n in range(1, total + 1)]
        assert seqs == list(range(1, total + 1)), seqs

        kept = await writer.call("history", name, since=0)
        assert [m["seq"] for m in kept["messages"]] == list(range(total - HISTORY + 1, total + 1)), kept
        assert [m["data"]["n"] for m in kept["messages"]][:1] == [total - HISTORY + 1]
        page = await writer.call("history", name, since=0, limit=3)
        assert [m["seq"] for m in page["messages"]] == [16, 17, 18], page

        lost = await Client.open(ws_url(cp, token))
        subscribed = await lost.call("subscribe", name, since=0)
        assert subscribed["recovered"] is False and subscribed["missed"] == HISTORY, subscribed
        got = await lost.messages(name, HISTORY)
        assert [m["seq"] for m in got] == list(range(total - HISTORY + 1, total + 1))

        whole = await Client.open(ws_url(cp, token))
        subscribed = await whole.call("subscribe", name, since=total - HISTORY)
        assert subscribed["recovered"] is True and subscribed["missed"] == HISTORY, subscribed
        for client in (writer, lost, whole):
            await client.close()

    run(scenario())


def test_history_forgets_messages_older_than_the_age(limited):
    name = room("aged")
    with api(limited) as http:
        for n in range(3):
            sent = http.post(f"/api/v1/realtime/rooms/{name}/messages", json={"data": {"n": n}})
            assert sent.status_code == 201, sent.text
        listed = http.get(f"/api/v1/realtime/rooms/{name}/messages", params={"since": 0})
        assert [m["seq"] for m in listed.json()] == [1, 2, 3], listed.text

        def forgotten() -> bool:
            return http.get(f"/api/v1/realtime/rooms/{name}/messages", params={"since": 0}).json() == []

        until(f"history older than {AGE_S} s to be gone", forgotten, timeout_s=AGE_S + 20, every_s=0.5)
        # The sequence keeps counting: a message after the gap is 4, not 1.
        after = http.post(f"/api/v1/realtime/rooms/{name}/messages", json={"data": {"n": 3}})
        assert after.json()["seq"] == 4, after.text


def test_a_silent_client_is_closed_4408_while_a_pinging_one_stays(limited):
    async def pinging(client: Client, stop: asyncio.Event) -> int:
        pongs = 0
        while not stop.is_set():
            assert (await client.call("ping"))["type"] == "pong"
            pongs += 1
            with contextlib.suppress(TimeoutError):  # paced by the clock, or stopped early
                await asyncio.wait_for(stop.wait(), HEARTBEAT_S / 2)
        return pongs

    async def scenario() -> None:
        token = mint(limited, "idl", ["free:*"])
        silent, talker = await Client.open(ws_url(limited, token)), await Client.open(ws_url(limited, token))
        stop = asyncio.Event()
        pinger = asyncio.create_task(pinging(talker, stop))
        started = asyncio.get_running_loop().time()
        code = await close_code(silent, timeout=20 * HEARTBEAT_S)
        waited = asyncio.get_running_loop().time() - started
        assert code == protocol.IDLE, code
        assert waited >= 1.5 * HEARTBEAT_S * 0.9, f"closed after {waited:.2f} s: before 1.5 heartbeats"
        # The talker has lived as long as the silent one did, and lives two heartbeats more.
        await asyncio.sleep(2 * HEARTBEAT_S)
        stop.set()
        pongs = await pinger
        assert pongs >= 3 and talker.ws.close_code is None, (pongs, talker.ws.close_code)
        assert (await talker.call("ping"))["type"] == "pong"
        await talker.close()

    run(scenario())


def test_a_frame_past_the_servers_websocket_cap_closes_1009(limited):
    # Past 4x the frame cap (at least 1 MiB) uvicorn refuses the frame before the consumer
    # reads it: the connection closes with the protocol's "message too big".
    async def scenario() -> int:
        client = await Client.open(ws_url(limited, mint(limited, "huge", ["free:*"])))
        await client.ws.send("x" * ((1 << 20) + 1))
        return await close_code(client)

    assert run(scenario()) == 1009


def test_connections_past_the_process_cap_are_closed_1013():
    with rt_serve(realtime__max_connections="2") as cp:
        token = mint(cp, "ful", ["free:*"])

        async def scenario() -> None:
            held = [await Client.open(ws_url(cp, token)) for _ in range(2)]
            for client in held:
                assert (await client.call("ping"))["type"] == "pong"
            assert await close_code(await Client.open(ws_url(cp, token))) == protocol.FULL
            await held[0].close()

            async def admitted() -> bool:
                client = await Client.open(ws_url(cp, token))
                answer = await client.call("ping") if client.ws.close_code is None else None
                ok = answer is not None and answer.get("type") == "pong"
                await client.close()
                return ok

            # The freed place is taken once the server has seen the close (polled, not slept).
            for _ in range(100):
                with contextlib.suppress(ConnectionClosed):
                    if await admitted():
                        return
                await asyncio.sleep(0.1)
            raise AssertionError("a closed connection never freed its place")

        run(scenario())
