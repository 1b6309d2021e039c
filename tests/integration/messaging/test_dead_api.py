"""The dead-letter API on a real `coreplane serve` archiving a test's vhost: list with
filters and pages, inspect (text and binary bodies), discard (audited), and what is refused:
roles, unknown and malformed ids, bad filters, a truncated body's replay, a bad queue name."""

from __future__ import annotations

import base64
import uuid

from tests.support.messaging_dead import dead_letter, dead_letter_stack
from tests.support.task_control import token_of


def _field(answer) -> str:
    """The fields a 4xx problem names."""
    return (
        " ".join(str(e.get("field")) for e in answer.json().get("errors") or [])
        + " "
        + answer.json()["detail"]
    )


def test_dead_letters_are_listed_inspected_and_discarded(tmp_path, services):
    with dead_letter_stack(services, tmp_path, archive_body_bytes=1024) as stack, stack.api() as api:
        dead_letter(stack.url, "orders", b'{"n": 1}', message_id="m-1", error="KeyError: 'sku'")
        dead_letter(stack.url, "orders", b"\xff\xfe\x00binary", message_id="m-2", reason="invalid",
                    error="body.sku: 'sku' is a required property")  # fmt: skip
        dead_letter(
            stack.url, "short", b"y" * 4000, message_id="m-3", routing_key="short.x", reason="rejected"
        )
        stack.archived(api, 3)

        invalid = api.get("/messaging/dead-letters", params={"reason": "invalid"}).json()["items"]
        assert [r["message_id"] for r in invalid] == ["m-2"]
        assert [r["message_id"] for r in api.get("/messaging/dead-letters", params={"q": "sku"}).json()["items"]] == [
            "m-2", "m-1"]  # fmt: skip
        assert {r["message_id"] for r in api.get("/messaging/dead-letters", params={"queue": "orders"}).json()["items"]} == {
            "m-1", "m-2"}  # fmt: skip
        # Keyset pages, newest first, each row once.
        first = api.get("/messaging/dead-letters", params={"limit": 2}).json()
        second = api.get("/messaging/dead-letters", params={"limit": 2, **first["next"]}).json()
        assert [r["message_id"] for r in first["items"] + second["items"]] == ["m-3", "m-2", "m-1"]

        text = api.get(f"/messaging/dead-letters/{invalid[0]['id']}").json()
        assert text["body_encoding"] == "base64" and base64.b64decode(text["body"]) == b"\xff\xfe\x00binary"
        one = next(r for r in first["items"] + second["items"] if r["message_id"] == "m-1")
        got = api.get(f"/messaging/dead-letters/{one['id']}").json()
        assert (got["body_encoding"], got["body"], got["error"]) == ("utf-8", '{"n": 1}', "KeyError: 'sku'")
        assert got["headers"]["x-coreplane-reason"] == "failed" and got["attempts"] == 4

        operator = stack.api(token_of(api, "operator"))
        discarded = operator.post(
            "/messaging/dead-letters/discard", json={"ids": [one["id"]], "reason": "known bug"}
        )
        assert discarded.status_code == 200, discarded.text
        assert discarded.json()["discarded"] == [one["id"]]
        assert api.get(f"/messaging/dead-letters/{one['id']}").json()["state"] == "discarded"
        assert "m-1" not in {r["message_id"] for r in api.get("/messaging/dead-letters").json()["items"]}
        (entry,) = api.get("/audit", params={"action": "messaging.discard"}).json()
        assert entry["details"]["reason"] == "known bug" and entry["details"]["discarded"] == 1
        # Discarding it again finds nothing dead: 404, nothing changed.
        assert operator.post("/messaging/dead-letters/discard", json={"ids": [one["id"]]}).status_code == 404


def test_refusals_name_the_field_and_touch_nothing(tmp_path, services):
    with dead_letter_stack(services, tmp_path, archive_body_bytes=1024) as stack, stack.api() as api:
        dead_letter(stack.url, "orders", b"z" * 2000, message_id="cut")
        (cut,) = stack.archived(api, 1)
        viewer = stack.api(token_of(api, "viewer"))
        operator = stack.api(token_of(api, "operator"))

        assert viewer.get("/messaging/dead-letters").status_code == 200
        for path, body in (("/messaging/dead-letters/replay", {"ids": [cut["id"]]}),
                           ("/messaging/dead-letters/discard", {"ids": [cut["id"]]}),
                           ("/messaging/queues/orders/purge", {})):  # fmt: skip
            assert viewer.post(path, json=body).status_code == 403, path

        assert api.get(f"/messaging/dead-letters/{uuid.uuid4()}").status_code == 404
        bad_id = api.get("/messaging/dead-letters/not-a-uuid")
        assert bad_id.status_code == 422 and "dead_id" in _field(bad_id)
        for params, field in (
            ({"state": "zombie"}, "state"),
            ({"limit": 501}, "limit"),
            ({"since": "yesterday"}, "since"),
        ):
            answer = api.get("/messaging/dead-letters", params=params)
            assert answer.status_code == 422 and field in _field(answer), (params, answer.text)

        cases = [
            ({"ids": ["nope"]}, "ids"),
            ({"ids": [cut["id"]], "filter": {"queue": "orders"}}, "ids or filter"),
            ({}, "ids or filter"),
            ({"filter": {"queue": "orders", "reason": "bored"}}, "params.reason"),
            ({"filter": {"queue": "bad queue!"}}, "params.queue"),
            ({"filter": {"queue": "orders", "limit": 5000}}, "limit"),
            ({"ids": [str(uuid.uuid4()) for _ in range(501)]}, "ids"),
            ({"ids": [cut["id"]]}, "params.ids"),  # its body was cut at 1024 bytes: not replayable
        ]
        for body, field in cases:
            answer = operator.post("/messaging/dead-letters/replay", json=body)
            assert answer.status_code in (413, 422) and field in _field(answer), (body, answer.text)
        missing = operator.post("/messaging/dead-letters/replay", json={"ids": [str(uuid.uuid4())]})
        assert missing.status_code == 404
        purge = operator.post("/messaging/queues/bad%20name/purge", json={})
        assert purge.status_code == 422 and "name" in _field(purge)

        assert api.get("/actions", params={"kind": "messaging.replay"}).json() == []
        assert api.get(f"/messaging/dead-letters/{cut['id']}").json()["state"] == "dead"


def test_a_replay_without_an_agent_fails_and_leaves_the_rows_dead(tmp_path, services):
    from tests.support.task_control import finished_action

    with dead_letter_stack(services, tmp_path) as stack, stack.api() as api:
        dead_letter(stack.url, "orders", b"{}", message_id="lonely")
        (row,) = stack.archived(api, 1)
        created = api.post("/messaging/dead-letters/replay", json={"ids": [row["id"]], "reason": "try"})
        assert created.status_code == 202, created.text
        assert created.json()["kind"] == "messaging.replay" and created.json()["target"] == "rabbitmq"
        done = finished_action(api, created.json()["id"])
        assert done["state"] == "failed" and "no healthy instance" in done["result"]["error"]
        assert api.get(f"/messaging/dead-letters/{row['id']}").json()["state"] == "dead"
