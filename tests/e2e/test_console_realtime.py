"""The Realtime pages against a real `coreplane serve` on the Redis channel layer, with real
websocket clients: a viewer sees the rooms, this process's figures and limits, a room's
members and its last messages (escaped); the publish form refuses a viewer and a missing
CSRF token, publishes for an operator (a client in the room receives it) and shows bad JSON
or a schema's refusal as a form error naming the field; charts draw the collector's totals
from the store; Redis not answering is a line on the page, never a 500."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from tests.support.console import console_users, csrf_of
from tests.support.processes import free_port
from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.timing import until

SCHEMAS = [{"room": "form:*", "json_schema": {"type": "object", "required": ["text"],
                                              "properties": {"text": {"type": "string"}}}}]  # fmt: skip


def _api_publish(cp, room_name: str, data: object) -> int:  # type: ignore[no-untyped-def]
    answer = httpx.post(f"{cp.url}/api/v1/realtime/rooms/{room_name}/messages", json={"data": data},
                        headers={"Authorization": f"Bearer {cp.token}"}, timeout=10)  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()["seq"]


def _row(page: str, room_name: str) -> str:
    found = re.search(rf'<tr data-room="{re.escape(room_name)}">(.*?)</tr>', page, re.S)
    assert found, f"no row for {room_name} in the page"
    return found.group(1)


def test_a_viewer_sees_rooms_figures_members_and_escaped_history(services):
    with rt_serve(realtime__schemas=json.dumps(SCHEMAS)) as cp:
        viewer = console_users(cp.url, cp.token, vera="viewer")["vera"]
        name = room("page")

        async def scenario() -> None:
            client = await Client.open(ws_url(cp, mint(cp, "alice", [name])))
            try:
                assert (await client.call("subscribe", name))["type"] == "subscribed"
                for i in range(3):
                    _api_publish(cp, name, {"text": f"<b>hi {i}</b>"})
                await client.messages(name, 3)

                page = await asyncio.to_thread(viewer.get, "/realtime")
                assert page.status_code == 200
                row = _row(page.text, name)
                assert (
                    '<td data-figure="last-seq">3</td>' in row and '<td data-figure="present">1</td>' in row
                )
                assert f'href="/realtime/rooms/{quote(name, safe="")}"' in row
                assert '<dd data-figure="connections">1</dd>' in page.text, "this process holds one socket"
                assert "<code>form:*</code>" in page.text and 'data-limit="heartbeat_s"' in page.text
                assert '<a href="/realtime">Realtime</a>' in page.text, "the nav links the page"
                assert 'id="rt-no-figures"' in page.text, "nothing stored: the hint, not an error"
                assert 'ws-connect="/ws/console?page=realtime"' in page.text

                block = await asyncio.to_thread(viewer.get, "/realtime", headers={"HX-Request": "true"})
                assert block.text.lstrip().startswith('<section id="rt-rooms"') and "<html" not in block.text

                detail = await asyncio.to_thread(viewer.get, f"/realtime/rooms/{name}")
                assert detail.status_code == 200
                assert '<tr data-user="alice">' in detail.text
                assert "&lt;b&gt;hi 2&lt;/b&gt;" in detail.text and "<b>hi" not in detail.text
                seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', detail.text)]
                assert seqs == [1, 2, 3], "the history, newest last"
                assert 'id="rt-publish"' not in detail.text, "a viewer gets no publish form"
            finally:
                await client.close()

        asyncio.run(scenario())
        bad = viewer.get("/realtime/rooms/" + quote("no spaces here"))
        assert bad.status_code == 422 and "room: 1 to 128" in bad.text
        viewer.close()


def test_the_publish_form_refuses_viewers_and_stale_forms_and_publishes_for_operators(services):
    with rt_serve(realtime__schemas=json.dumps(SCHEMAS)) as cp:
        users = console_users(cp.url, cp.token, vera="viewer", otto="operator")
        viewer, operator = users["vera"], users["otto"]
        name = room("form")
        path = f"/realtime/rooms/{name}/publish"

        refused = viewer.post(path, data={"csrf": csrf_of(viewer.get("/").text), "data": '{"text": "x"}'})
        assert refused.status_code == 403 and "operator" in refused.text
        stale = operator.post(path, data={"data": '{"text": "x"}'})
        assert stale.status_code == 403 and "CSRF" in stale.text
        csrf = csrf_of(operator.get(f"/realtime/rooms/{name}").text)

        async def scenario() -> None:
            client = await Client.open(ws_url(cp, mint(cp, "bob", [name])))
            try:
                assert (await client.call("subscribe", name))["type"] == "subscribed"
                sent = await asyncio.to_thread(
                    operator.post, path, data={"csrf": csrf, "data": '{"text": "from the console"}'}
                )
                assert sent.status_code == 303 and sent.headers["location"].endswith("?published=1")
                (got,) = await client.messages(name, 1)
                assert got["data"] == {"text": "from the console"} and got["from"] == "console:otto"
            finally:
                await client.close()

        asyncio.run(scenario())
        after = operator.get(f"/realtime/rooms/{name}?published=1").text
        assert 'id="rt-published"' in after and '<tr data-seq="1">' in after

        not_json = operator.post(path, data={"csrf": csrf, "data": "{text: oops"})
        assert not_json.status_code == 422 and 'id="rt-form-error"' in not_json.text
        assert "data is not JSON" in not_json.text and "{text: oops</textarea>" in not_json.text
        wrong = operator.post(path, data={"csrf": csrf, "data": '{"text": 5}'})
        assert wrong.status_code == 422 and "data.text" in wrong.text, wrong.text[:500]
        huge = operator.post(path, data={"csrf": csrf, "data": json.dumps({"text": "x" * 70_000})})
        assert huge.status_code == 413 and "over the cap" in huge.text
        bad_room = operator.post(
            "/realtime/rooms/" + quote("bad room") + "/publish", data={"csrf": csrf, "data": "1"}
        )
        assert bad_room.status_code == 422
        history = httpx.get(f"{cp.url}/api/v1/realtime/rooms/{name}/messages",
                            headers={"Authorization": f"Bearer {cp.token}"}).json()  # fmt: skip
        assert [m["seq"] for m in history] == [1], "nothing refused was stored"
        for client in users.values():
            client.close()


def _chart(page: str, title: str) -> dict:
    found = re.search(rf"<figcaption>{re.escape(title)}</figcaption>\s*<div data-chart='([^']*)'", page)
    assert found, f"no chart {title!r}"
    return json.loads(html.unescape(found.group(1)))


def test_charts_draw_the_collectors_totals_from_the_store(services):
    with rt_serve() as cp:
        viewer = console_users(cp.url, cp.token, vera="viewer")["vera"]
        at = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        metrics = [
            {"metric_type": "coreplane_rt_delivery_p99_seconds", "service_name": "realtime", "timestamp": at,
             "value": 0.025},
            {"metric_type": "coreplane_rt_delivery_p99_seconds", "service_name": "realtime", "timestamp": at,
             "value": 9.0, "tags": {"kind": "chat:*"}},
            {"metric_type": "coreplane_rt_connections", "service_name": "realtime", "timestamp": at,
             "value": 42.0},
        ]  # fmt: skip
        batch = {"batch_id": f"e2e-{uuid.uuid4().hex}", "agent": "e2e", "metrics": metrics}
        answer = httpx.post(
            f"{cp.url}/api/v1/ingest", json=batch, headers={"Authorization": f"Bearer {cp.token}"}
        )
        assert answer.status_code == 202, answer.text

        def charted() -> str | None:
            text = viewer.get("/realtime").text
            return text if 'id="rt-no-figures"' not in text else None

        page = until("the stored figures charted", charted, 20, 0.5)
        latency = _chart(page, "Delivery latency")
        assert latency["unit"] == " ms"
        lines = {s["label"]: [v for v in s["values"] if v is not None] for s in latency["series"]}
        assert lines == {"p99": [25.0]}, "the total in ms; the per room-kind series left out"
        connections = _chart(page, "Connections and presence")
        assert [s["values"] for s in connections["series"] if s["label"] == "connections"] == [[42.0]]
        viewer.close()


def test_redis_not_answering_is_a_line_on_the_page_not_an_error(services):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with rt_serve(redis=False, realtime__redis_url=dead) as cp:
        users = console_users(cp.url, cp.token, vera="viewer", otto="operator")
        page = users["vera"].get("/realtime")
        assert page.status_code == 200
        assert re.search(r'id="rt-rooms-error">unavailable: Redis did not answer', page.text), page.text[
            :2000
        ]
        one = users["otto"].get("/realtime/rooms/chat:1")
        assert one.status_code == 200 and 'id="rt-room-error"' in one.text
        sent = users["otto"].post(
            "/realtime/rooms/chat:1/publish", data={"csrf": csrf_of(one.text), "data": '{"text": "x"}'}
        )
        assert sent.status_code == 503 and 'id="rt-form-error"' in sent.text
        for client in users.values():
            client.close()
