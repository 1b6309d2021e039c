"""The console's topology and queue pages against a real `coreplane serve` and RabbitMQ (a
vhost of the test's own): a viewer sees the diff and no form, and the server refuses the
forms; an operator applies the definition through preview and confirm, then moves messages
from a queue's page the same way, and the broker shows it."""

from __future__ import annotations

import html
import json
import re

import httpx

from controlplane.messaging.topology import depth
from tests.support.console import console_users, csrf_of, page_with
from tests.support.messaging_topology import publish
from tests.support.rabbitmq import rabbit_vhost
from tests.support.serve import private_serve
from tests.support.timing import until

DEFINITION = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "orders", "type": "quorum"}, {"name": "orders.replay"}],
    "bindings": [{"exchange": "orders", "queue": "orders", "routing_key": "order.#"}],
}


def _fields(page: str, form_id: str) -> dict[str, str]:
    """The named inputs of form ``form_id`` with their values (a checkbox only when checked)."""
    form = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert form, f"no form {form_id!r} on the page"
    found = {}
    for tag in re.findall(r"<input[^>]*>", form.group(1)):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and ('type="checkbox"' not in tag or "checked" in tag):
            found[name.group(1)] = (
                html.unescape(value.group(1)) if value else ("on" if "checkbox" in tag else "")
            )
    return found


def _confirmed(client: httpx.Client, form: dict[str, str], says: str) -> str:
    """Preview ``form`` (checking the preview says ``says``), confirm it: the action's path."""
    preview = client.post("/messaging/operations/preview", data=form)
    assert preview.status_code == 200, preview.text
    assert says in preview.text, preview.text
    confirm = re.search(
        r'<form method="post" action="/messaging/operations/confirm">(.*?)</form>', preview.text, re.S
    )
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.group(1)))
    done = client.post("/messaging/operations/confirm", data={k: html.unescape(v) for k, v in hidden.items()})
    assert done.status_code == 303, done.text
    return done.headers["location"]


def _succeeded(client: httpx.Client, path: str) -> str | None:
    page = client.get(path).text
    assert 'data-state="failed"' not in page, page
    return page if 'data-state="succeeded"' in page else None


def test_an_operator_applies_the_topology_and_moves_messages_through_preview_and_confirm(services, tmp_path):
    with (
        rabbit_vhost(services) as url,
        private_serve(tmp_path, messaging__url=url, messaging__definition=json.dumps(DEFINITION)) as (
            cp_url,
            token,
            _log,
        ),
    ):
        clients = console_users(cp_url, token, otto="operator", vera="viewer")
        viewer, operator = clients["vera"], clients["otto"]

        # A viewer sees what apply would do, and no form.
        page = viewer.get("/messaging/topology")
        assert page.status_code == 200, page.text
        assert 'data-diff="add" data-name="orders.replay"' in page.text and 'id="apply-form"' not in page.text
        form = {"csrf": csrf_of(page.text), "kind": "mq.apply"}
        assert viewer.post("/messaging/operations/preview", data=form).status_code == 403
        assert viewer.post("/messaging/operations/confirm", data=form).status_code == 403

        # An operator applies it: the preview lists the steps and the diff.
        page = operator.get("/messaging/topology").text
        action = _confirmed(operator, _fields(page, "apply-form"), "Add queue orders.replay")
        until("the apply to succeed", lambda: _succeeded(operator, action), 30, 0.2)
        page_with(viewer, "/messaging/topology", 'id="diff-empty"', "the broker matching the definition")

        # Then moves two of three messages from the queue's page, oldest first.
        publish(url, "orders", 3)
        queue = viewer.get("/messaging/queues/orders")
        assert queue.status_code == 200 and 'data-field="type">quorum' in queue.text
        assert 'id="move-form"' not in queue.text and 'id="purge-form"' not in queue.text
        page = operator.get("/messaging/queues/orders").text
        assert 'action="/messaging/queues/orders/purge"' in page
        move = _fields(page, "move-form") | {
            "destination": "orders.replay",
            "limit": "2",
            "reason": "replay two",
        }
        action = _confirmed(
            operator, move, "Move at most 2 messages from orders to orders.replay, oldest first"
        )
        detail = until("the move to succeed", lambda: _succeeded(operator, action), 30, 0.2)
        assert "2 message(s) moved from orders to orders.replay" in detail
        assert depth(url, "orders.replay") == 2 and depth(url, "orders") == 1

        # Bad input is refused naming the field, before any preview; an unknown queue is 404.
        bad = operator.post("/messaging/operations/preview", data=move | {"limit": "0"})
        assert bad.status_code == 422 and "params.limit" in bad.text
        assert viewer.get("/messaging/queues/nowhere").status_code == 404
