"""Odd input against a real `coreplane serve` (issue 12, findings 7 and 12): the console's
forms and pages answer 4xx saying what to fix, never a 500, and a request head over the
limit gets 431 problem+json instead of being read into memory."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.console import console_users, csrf_of

LATE, EARLY = "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"


@pytest.fixture
def admin(control_plane_sqlite):  # type: ignore[no-untyped-def]
    url, token, _log = control_plane_sqlite
    return console_users(url, token)["admin"]


SCALE_FORMS = [
    ({"n": "abc"}, "n must be a whole number"),
    ({"n": "²"}, "n must be a whole number"),
    ({"n": "1e30"}, "n must be a whole number"),
    ({"n": "-5"}, "params.n"),
    ({"min": "5", "max": "2"}, "min (5) is more than max (2)"),
]


def test_forms_and_pages_with_odd_input_say_what_to_fix(admin):
    """One server for every case: each would otherwise start its own."""
    csrf = csrf_of(admin.get("/actions").text)
    for form, says in SCALE_FORMS:
        answer = admin.post(
            "/actions/preview", data={"csrf": csrf, "kind": "scale", "target": "tasks", **form}
        )
        assert answer.status_code == 422, (form, answer.text)
        assert says in answer.text, form

    csrf = csrf_of(admin.get("/settings").text)
    answer = admin.post(
        "/settings", data={"csrf": csrf, "setting_type": "odd", "value": "{}", "version": "²"}
    )
    assert answer.status_code == 422, answer.text
    assert "reload the page" in answer.text
    value = '{"a": ' + "[" * 3000 + "]" * 3000 + "}"
    answer = admin.post(
        "/settings", data={"csrf": csrf, "setting_type": "odd", "value": value, "version": "0"}
    )
    assert answer.status_code == 422, answer.text
    assert "deeper than" in answer.text
    assert 'id="setting-odd"' not in admin.get("/settings").text

    for timestamp in (LATE, EARLY):
        for path, params in (("/explore", {"metric": "m", "start": timestamp}),
                             ("/explore", {"metric": "m", "end": timestamp}),
                             ("/events", {"since": timestamp}), ("/events", {"until": timestamp})):  # fmt: skip
            answer = admin.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.text)
            assert "outside years 1 to 9999" in answer.text, (path, params)


def test_a_100_kb_header_gets_431_and_the_server_keeps_serving(control_plane_sqlite):
    url, _token, _log = control_plane_sqlite
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"application/problem+json" in head
    assert "headers are over" in json.loads(body)["detail"]
    assert httpx.get(f"{url}/healthz", headers={"X-Small": "a" * 1000}).status_code == 200
