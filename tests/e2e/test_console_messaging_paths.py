"""The messaging pages with a name or an id in their path, which the console matrix's
tables cannot list: each answers its lowest role and refuses a lower one, its forms need
their CSRF token, and an unknown or malformed id is a 404 or 422, never a 500."""

from __future__ import annotations

import uuid

import pytest

from tests.support.console import console_users, csrf_of


@pytest.fixture
def clients(control_plane_sqlite):  # type: ignore[no-untyped-def]
    url, token, _log = control_plane_sqlite
    users = console_users(url, token, olga="operator", viktor="viewer")
    yield users["admin"], users["olga"], users["viktor"]
    for client in users.values():
        client.close()


def test_the_purge_form_is_for_operators_and_needs_its_csrf_token(clients):
    admin, operator, viewer = clients
    assert viewer.get("/messaging/queues/orders/purge").status_code == 403
    csrf = csrf_of(viewer.get("/").text)
    assert (
        viewer.post("/messaging/queues/orders/purge", data={"csrf": csrf, "kind": "queue.purge"}).status_code
        == 403
    )
    preview = operator.get("/messaging/queues/orders/purge")
    assert preview.status_code == 200, preview.text[:300]
    assert "orders" in preview.text
    refused = admin.post("/messaging/queues/orders/purge", data={"kind": "queue.purge", "queue": "orders"})
    assert refused.status_code == 403 and "CSRF" in refused.text


def test_a_dead_letter_page_answers_404_for_an_unknown_id_and_4xx_for_a_malformed_one(clients):
    _admin, _operator, viewer = clients
    assert viewer.get(f"/messaging/dead-letters/{uuid.uuid4()}").status_code == 404
    assert viewer.get("/messaging/dead-letters/not-a-uuid").status_code in (404, 422)
    assert viewer.get("/messaging/queues/" + "q" * 300 + "/purge").status_code == 403  # role first
