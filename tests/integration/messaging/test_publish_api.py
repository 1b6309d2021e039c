"""POST /api/v1/messaging/publish on a real `coreplane serve` and RabbitMQ: operators
publish, viewers may not, and bad input gets a 4xx naming the field with nothing enqueued."""

from __future__ import annotations

import base64
import json

import httpx

from tests.support.messaging import declare_definition, depth, messaging_serving, settings_for, take
from tests.support.rabbitmq import rabbit_vhost
from tests.support.serve import serving
from tests.support.task_control import client, token_of

DEFINITION = {
    "exchanges": [{"name": "shop", "type": "topic"}],
    "queues": [{"name": "orders", "max_priority": 5}],
    "bindings": [{"exchange": "shop", "queue": "orders", "routing_key": "order.#"}],
}
SCHEMAS = [
    {
        "exchange": "shop",
        "routing_key": "order.placed",
        "model": "tests.integration.messaging.schemas_models:Order",
    }
]


def field(answer: httpx.Response) -> str:
    return answer.json()["errors"][0]["field"]


def test_publish_through_the_api(services, tmp_path):
    with rabbit_vhost(services) as url:
        settings = settings_for(services, url, DEFINITION, schemas=SCHEMAS, max_body_bytes=2048)
        declare_definition(settings)
        with messaging_serving(settings, tmp_path) as cp, client(cp) as admin:
            operator = client(cp, token_of(admin, "operator"))
            viewer = client(cp, token_of(admin, "viewer"))
            message = {"exchange": "shop", "routing_key": "order.placed", "priority": 3, "message_id": "m-1",
                       "body": {"id": 1, "lines": [{"sku": "a", "quantity": 1}]}, "headers": {"h": "v"}}  # fmt: skip
            with viewer:
                answer = viewer.post("/messaging/publish", json=message)
                assert answer.status_code == 403, answer.text
            assert depth(url, "orders") == 0
            with operator:
                answer = operator.post("/messaging/publish", json=message)
                assert answer.status_code == 201, answer.text
                assert answer.json() == {
                    "message_id": "m-1",
                    "exchange": "shop",
                    "routing_key": "order.placed",
                }
                raw = {"exchange": "shop", "routing_key": "order.raw", "content_type": "text/plain",
                       "body_base64": base64.b64encode(b"plain words").decode()}  # fmt: skip
                answer = operator.post("/messaging/publish", json=raw)
                assert answer.status_code == 201, answer.text
                generated = answer.json()["message_id"]
                assert len(generated) == 32
                refused = [
                    ({"exchange": "nowhere", "routing_key": "k", "body": {}}, 422, "exchange"),
                    ({"exchange": "shop", "routing_key": "order.*", "body": {}}, 422, "routing_key"),
                    ({"exchange": "shop", "routing_key": "x" * 300, "body": {}}, 422, "routing_key"),
                    ({"exchange": "shop", "routing_key": "payment.made", "body": {}}, 422, "routing_key"),
                    ({"exchange": "shop", "routing_key": "order.placed", "body": {"id": 1, "lines": []}}, 422,
                     "body.lines"),
                    ({"exchange": "shop", "routing_key": "order.x", "body": {"pad": "x" * 3000}}, 413, "body"),
                    ({"exchange": "shop", "routing_key": "order.x", "body": {}, "priority": 300}, 422, "priority"),
                    ({"exchange": "shop", "routing_key": "order.x"}, 422, "body"),
                    ({"exchange": "shop", "routing_key": "order.x", "body": 1, "body_base64": "AA=="}, 422, "body"),
                    ({"exchange": "shop", "routing_key": "order.x", "body_base64": "!!"}, 422, "body_base64"),
                    ({"exchange": "shop", "routing_key": "order.x", "body": {}, "colour": "red"}, 422, "colour"),
                ]  # fmt: skip
                for body, status, name in refused:
                    answer = operator.post("/messaging/publish", json=body)
                    assert answer.status_code == status, (body, answer.text)
                    assert field(answer) == name, (body, answer.text)
                # Past the request's own cap the body is not even read.
                answer = operator.post(
                    "/messaging/publish", content=json.dumps({"exchange": "shop", "body": "y" * 200_000})
                )
                assert answer.status_code == 413, answer.text
                answer = operator.post("/messaging/publish", content=b"{not json")
                assert answer.status_code == 400, answer.text
        got = take(url, "orders")
        assert [m.properties["message_id"] for m in got] == ["m-1", generated]
        assert got[0].properties["priority"] == 3 and got[0].headers == {"h": "v"}
        assert got[1].body == b"plain words" and got[1].properties["content_type"] == "text/plain"


def test_without_a_broker_the_route_answers_409_and_with_a_dead_one_503(services, tmp_path):
    message = {"exchange": "", "routing_key": "q", "body": {}}
    with serving(f"sqlite:///{tmp_path}/a.db", tmp_path / "a.log", migrated=False) as cp, client(cp) as admin:
        answer = admin.post("/messaging/publish", json=message)
        assert answer.status_code == 409 and "no RabbitMQ is configured" in answer.text
    dead = settings_for(services, "amqp://guest:guest@127.0.0.1:1/", {}, confirm_timeout_s=1.0)
    (tmp_path / "b").mkdir()
    with messaging_serving(dead, tmp_path / "b") as cp, client(cp) as admin:
        answer = admin.post("/messaging/publish", json=message)
        assert answer.status_code == 503, answer.text
