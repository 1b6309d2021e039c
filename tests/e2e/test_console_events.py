"""The console's events page against a real `coreplane serve`: events ingested through
POST /api/v1/ingest are listed exactly as GET /api/v1/events lists them, filters and
full-text search narrow them, the older-events link pages with the store's cursor, bad
filters get a 422 page, and the live tail pushes a new event over the websocket."""

from __future__ import annotations

import html
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.console import console_login, csrf_of, pushed_with

PASSWORD = "correct horse battery staple"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _ingest(url: str, token: str, events: list[dict]) -> None:
    answer = httpx.post(f"{url}/api/v1/ingest", headers={"Authorization": f"Bearer {token}"},
                        json={"batch_id": f"e2e-{uuid.uuid4().hex}", "agent": "e2e", "events": events})  # fmt: skip
    assert answer.status_code == 202 and answer.json()["events"] == len(events), answer.text


def _event(service: str, event_type: str, status: str, at: datetime, **details: object) -> dict:
    return {"event_type": event_type, "service_name": service, "status": status,
            "timestamp": at.isoformat(), "details": details}  # fmt: skip


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr data-event="([^"]+)"', page)


def _api_ids(url: str, token: str, **params: object) -> tuple[list[str], str | None]:
    answer = httpx.get(f"{url}/api/v1/events", headers={"Authorization": f"Bearer {token}"}, params=params)
    assert answer.status_code == 200, answer.text
    return [e["id"] for e in answer.json()["events"]], answer.json()["next_cursor"]


def _older(page: str) -> str | None:
    found = re.search(r'<a class="older" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def test_events_filters_search_pages_and_bad_filters(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    admin, answer = console_login(url, token=token)
    assert answer.status_code == 303
    empty = admin.get("/events")
    assert empty.status_code == 200 and "No events yet" in empty.text and _ids(empty.text) == []

    now = datetime.now(UTC).replace(microsecond=0)
    checkout = [
        _event("checkout", "deploy" if i % 3 == 0 else "health", "critical" if i % 4 == 0 else "passing",
               now - timedelta(seconds=10 * i), message=f"checkout step {i}", host=f"web-{i}")
        for i in range(12)
    ]  # fmt: skip
    payments = [_event("payments", "health", "warning", now - timedelta(seconds=5 + 20 * i), message="slow")
                for i in range(3)]  # fmt: skip
    payments.append(_event("payments", "alert", "firing", now - timedelta(seconds=7), alertname="Zanzibar down",
                           trace_id=TRACE))  # fmt: skip
    _ingest(url, token, checkout + payments)

    page = admin.get("/events")
    assert page.status_code == 200
    api_ids, api_cursor = _api_ids(url, token, limit=50)
    assert _ids(page.text) == api_ids and len(api_ids) == 16 and api_cursor is None
    assert "Zanzibar down" in page.text and f'href="/events?q={TRACE}"' in page.text
    assert 'ws-connect="/ws/console?page=events"' in page.text  # the newest page is live

    # Each filter narrows the list to what the API returns for the same query.
    for params, expected in (
        ({"service_name": "payments"}, 4),
        ({"event_type": "deploy"}, 4),
        ({"status": "critical"}, 3),
        ({"service_name": "checkout", "status": "passing"}, 9),
        ({"q": "zanzibar"}, 1),
        ({"q": "checkout web-11"}, 1),
        ({"until": (now - timedelta(seconds=55)).isoformat()}, 6),
        (
            {
                "since": (now - timedelta(seconds=25)).strftime("%Y-%m-%dT%H:%M:%S"),
                "service_name": "checkout",
            },
            3,
        ),
        ({"last": "15m"}, 16),
    ):
        narrowed = admin.get("/events", params=params)
        assert narrowed.status_code == 200, (params, narrowed.text)
        api_params = {k: v for k, v in params.items() if k != "last"}
        assert _ids(narrowed.text) == _api_ids(url, token, **api_params)[0], params
        assert len(_ids(narrowed.text)) == expected, params
    assert 'data-service="checkout"' not in admin.get("/events", params={"service_name": "payments"}).text
    nothing = admin.get("/events", params={"q": "no-such-word-anywhere"})
    assert nothing.status_code == 200 and "No event matches these filters" in nothing.text

    # Older pages, with the store's cursor: five at a time, newest first, until there are no more.
    first = admin.get("/events", params={"service_name": "checkout", "limit": 5}).text
    _, api_cursor = _api_ids(url, token, service_name="checkout", limit=5)
    assert parse_qs(urlsplit(_older(first)).query)["cursor"] == [api_cursor]
    seen, page_text = [], first
    while True:
        seen += _ids(page_text)
        link = _older(page_text)
        if link is None:
            break
        page_text = admin.get(link).text
        assert (
            "ws-connect" not in page_text and "Back to the newest" in page_text
        )  # an older page is not live
    assert seen == _api_ids(url, token, service_name="checkout")[0] and len(seen) == 12

    # Bad filters: a 422 page that says what to fix, never a 500.
    for params, reason in (
        ({"cursor": "not-a-cursor"}, "cursor is not one this API returned"),
        ({"since": "yesterday"}, "since &#39;yesterday&#39; is not a time"),
        ({"limit": "0"}, "limit must be a whole number"),
        ({"last": "3w"}, "last must be one of"),
    ):
        bad = admin.get("/events", params=params)
        assert bad.status_code == 422 and reason in bad.text and 'id="events-error"' in bad.text, params

    # A viewer reads the page; without a session it is the login page.
    admin.post("/users", data={"csrf": csrf_of(admin.get("/users").text), "op": "add", "username": "vera",
                               "password": PASSWORD, "role": "viewer"})  # fmt: skip
    viewer, _ = console_login(url, username="vera", password=PASSWORD)
    assert _ids(viewer.get("/events").text) == api_ids
    anonymous = httpx.get(f"{url}/events")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    for client in (admin, viewer):
        client.close()


def test_live_tail_pushes_a_new_matching_event(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    admin, answer = console_login(url, token=token)
    assert answer.status_code == 303
    now = datetime.now(UTC)
    _ingest(
        url, token, [_event("payments", "health", "passing", now - timedelta(seconds=1), message="before")]
    )
    page = admin.get("/events", params={"service_name": "payments"}).text
    live = html.unescape(re.search(r'ws-connect="([^"]+)"', page).group(1))
    assert live == "/ws/console?page=events&service_name=payments"

    headers = {"Cookie": f"coreplane_session={admin.cookies['coreplane_session']}", "Origin": url}
    with connect(url.replace("http://", "ws://") + live, additional_headers=headers, open_timeout=5) as ws:
        catch_up = ws.recv(timeout=5)  # on connect: the block as it is now
        assert catch_up.strip().startswith('<section id="events">') and "before" in catch_up
        marker, other = f"live-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
        sent = time.monotonic()
        _ingest(url, token, [_event("payments", "health", "critical", datetime.now(UTC), message=marker),
                             _event("checkout", "health", "critical", datetime.now(UTC), message=other)])  # fmt: skip
        pushed = pushed_with(ws, marker, "the new event", timeout_s=5)
        latency = time.monotonic() - sent
        assert other not in pushed  # the tail keeps the page's filters
        assert pushed.index(marker) < pushed.index("before")  # newest first
    assert latency < 5
    # A cross-site page may not open the socket with the user's cookie.
    refused = {"Cookie": headers["Cookie"], "Origin": "http://evil.example"}
    with pytest.raises(InvalidStatus) as handshake:
        connect(url.replace("http://", "ws://") + live, additional_headers=refused, open_timeout=5)
    assert handshake.value.response.status_code == 403
    admin.close()
