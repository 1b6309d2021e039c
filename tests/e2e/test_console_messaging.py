"""The Messaging page against a real `coreplane serve` and RabbitMQ (a vhost of the test's
own): a viewer sees every queue with its depth, its DLQ and the dead letters the archive took
from it, links to the queue, topology and dead-letter pages; htmx gets only the table; the
nav links it; without a broker the page says how to configure one."""

from __future__ import annotations

import json
import re

import httpx

from tests.support.console import console_users
from tests.support.messaging import declare_definition, settings_for
from tests.support.messaging_analytics import publish, publish_dead_letter
from tests.support.rabbitmq import rabbit_vhost
from tests.support.serve import private_serve
from tests.support.timing import until

DEFINITION = {
    "queues": [{"name": "orders", "retry": {"attempts": 2}}, {"name": "audit", "dead_letter": False}]
}


def _row(page: str, queue: str) -> str:
    found = re.search(rf'<tr data-queue="{re.escape(queue)}">(.*?)</tr>', page, re.S)
    assert found, f"no row for {queue} in the page"
    return found.group(1)


def _settled(viewer: httpx.Client) -> str | None:
    page = viewer.get("/messaging").text
    orders = _row(page, "orders") if 'data-queue="orders"' in page else ""
    return (
        page if 'data-figure="archived">1<' in orders and '<td data-figure="dlq">0</td>' in orders else None
    )


def test_a_viewer_sees_queues_depths_and_archived_dead_letters(services, tmp_path):
    with rabbit_vhost(services) as url:
        declare_definition(settings_for(services, url, DEFINITION))
        publish(url, "orders", 3)
        publish_dead_letter(url, "orders")
        serve = private_serve(tmp_path, messaging__url=url, messaging__definition=json.dumps(DEFINITION))
        with serve as (cp_url, token, _log):
            viewer = console_users(cp_url, token, vera="viewer")["vera"]
            # The archive takes the dead letter from orders.dlq into the store within seconds.
            # The management API's figures lag by seconds: wait for both.
            page = until("the dead letter archived and orders.dlq empty", lambda: _settled(viewer), 30, 0.5)
            orders = _row(page, "orders")
            assert 'href="/messaging/queues/orders"' in orders
            assert (
                '<td data-figure="depth">3</td>' in orders and '<td data-figure="consumers">0</td>' in orders
            )
            assert '<td data-figure="archived">–</td>' in _row(page, "orders.dlq")
            assert '<td data-figure="dlq">–</td>' in _row(page, "audit")
            assert 'href="/messaging/dead-letters"' in page and 'href="/messaging/topology"' in page
            assert '<a href="/messaging">Messaging</a>' in page, "the nav links the page"
            assert "Depth (deepest queues)" in page

            block = viewer.get("/messaging", headers={"HX-Request": "true"})
            assert block.status_code == 200 and block.text.lstrip().startswith('<section id="queues"')
            assert "<html" not in block.text

            assert viewer.get("/messaging", follow_redirects=False).status_code == 200


def test_the_page_needs_a_login_and_says_when_no_broker_is_configured(tmp_path):
    bare = {"rabbitmq__url": "", "rabbitmq__management_url": "", "messaging__url": ""}
    with private_serve(tmp_path, **bare) as (cp_url, token, _log):
        with httpx.Client(base_url=cp_url) as anonymous:
            answer = anonymous.get("/messaging", follow_redirects=False)
        assert answer.status_code in (302, 303) and "/login" in answer.headers["location"]
        viewer = console_users(cp_url, token, vera="viewer")["vera"]
        page = viewer.get("/messaging")
    assert page.status_code == 200 and 'id="messaging-not-configured"' in page.text
    assert "COREPLANE_MESSAGING__URL" in page.text
