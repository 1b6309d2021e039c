"""Rules cannot stall a real `coreplane serve`: the payloads that froze it (a `**` target, a YAML
alias bomb, a huge repetition or range) get a prompt 422 from the API and the console's preview,
control characters a 422 problem+json, /healthz keeps answering while a preview renders, and a
document saved before these checks neither slows nor breaks the pages that show it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.support.console import console_users, csrf_of
from tests.support.timing import until
from tests.unit.policy.test_sandbox import alias_bomb, rule_with_target

PROMPT_S = 1.0  # the old code took 2.2 s for the `**` target and 4.8 s for the alias bomb
HEALTHZ_S = 1.0  # the old code froze it 2.2 s; a loaded 2-core machine alone reached 0.6 s
PAYLOADS = {
    "power": rule_with_target("{{ (9**(9**7)) > 1 }}"),
    "repeat": rule_with_target("{{ ' ' * 10**9 }}"),
    "range": rule_with_target("{{ range(10**9) | list }}"),
    "aliases": alias_bomb(),
}
# An absence rule on a silent service fires at every step of the preview's hour (240 renders):
# each render is allowed, and costs some milliseconds.
SLOW = rule_with_target(
    "{{ " + " + ".join(["(range(2000) | map('string') | join(',') | length)"] * 4) + " }}"
)


class HealthzWatch:
    """/healthz asked over and over from a thread; ``worst`` is its slowest answer, in seconds."""

    def __init__(self, url: str) -> None:
        self.url, self.worst, self.answers = url, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                self.worst = max(self.worst, time.monotonic() - started)
                self.answers += 1
                self._stop.wait(0.02)

    def __enter__(self) -> HealthzWatch:
        self._thread.start()
        until("a first /healthz answer", lambda: self.answers, timeout_s=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _timed(call, *args, **kwargs) -> tuple[httpx.Response, float]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    answer = call(*args, **kwargs)
    return answer, time.monotonic() - started


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_a_costly_rule_gets_a_prompt_422_from_the_api_and_the_preview(control_plane_sqlite, payload):
    url, token, _log = control_plane_sqlite
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    operator = console_users(url, token, olga="operator")["olga"]
    csrf = csrf_of(operator.get("/rules").text)

    put, took = _timed(api.put, "/api/v1/rules", json={"yaml": PAYLOADS[payload], "version": 0})
    assert put.status_code == 422, put.text[:500]
    assert put.headers["content-type"] == "application/problem+json"
    assert took < PROMPT_S and put.json()["errors"][0]["line"] is not None
    assert api.get("/api/v1/rules").json()["version"] == 0  # nothing changed

    with HealthzWatch(url) as watch:
        preview, took = _timed(operator.post, "/rules/preview", data={"csrf": csrf, "yaml": PAYLOADS[payload]},
                               timeout=120)  # fmt: skip
    assert watch.worst < HEALTHZ_S, watch.worst  # the old code froze the server 2.2 s on `**`
    assert preview.status_code == 422, preview.text[-1000:]
    assert took < PROMPT_S and "data-line=" in preview.text


@pytest.mark.parametrize("character", ["\x00", "\x07"])
def test_a_control_character_is_a_422_naming_its_line(control_plane_sqlite, character):
    url, token, _log = control_plane_sqlite
    text = f"- name: r\n  description: x{character}\n  trigger: {{event: {{type: x}}}}\n"
    put = httpx.put(f"{url}/api/v1/rules", headers={"Authorization": f"Bearer {token}"},
                    json={"yaml": text, "version": 0})  # fmt: skip
    assert put.status_code == 422 and put.headers["content-type"] == "application/problem+json"
    (error,) = put.json()["errors"]
    assert error["line"] == 2 and f"control character U+{ord(character):04X}" in error["reason"]

    operator = console_users(url, token, olga="operator")["olga"]
    preview = operator.post(
        "/rules/preview", data={"csrf": csrf_of(operator.get("/rules").text), "yaml": text}
    )
    assert preview.status_code == 422 and 'data-line="2"' in preview.text
    assert f"control character U+{ord(character):04X}" in preview.text


def test_healthz_answers_while_a_slow_preview_renders(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    operator = console_users(url, token, olga="operator")["olga"]
    csrf = csrf_of(operator.get("/rules").text)
    with HealthzWatch(url) as watch:
        preview, took = _timed(
            operator.post, "/rules/preview", data={"csrf": csrf, "yaml": SLOW}, timeout=120
        )
    assert preview.status_code == 200, preview.text[-1000:]
    assert took > 1.0  # slow enough for /healthz to be asked many times meanwhile
    assert watch.answers >= 10 and watch.worst < HEALTHZ_S, (watch.answers, watch.worst)


def test_a_document_saved_before_the_checks_neither_slows_nor_breaks_the_pages(control_plane_sqlite):
    from controlplane.policy.engine import RULES_SETTING
    from controlplane.store.db import make_engine, make_sessionmaker
    from controlplane.store.settings_store import put_setting

    url, token, log = control_plane_sqlite
    # Written straight into the store, as the old, laxer code would have accepted it.
    store = make_engine(f"sqlite:///{log.parent}/store.db")
    with make_sessionmaker(store)() as session:
        put_setting(session, setting_type=RULES_SETTING, value={"yaml": PAYLOADS["aliases"]},
                    expected_version=0, updated_by="old-code", now=datetime.now(UTC).replace(tzinfo=None))  # fmt: skip
        session.commit()
    store.dispose()

    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    stored, took = _timed(api.get, "/api/v1/rules")
    assert stored.status_code == 200 and took < PROMPT_S
    document = stored.json()
    assert document["version"] == 1 and document["rules"] == [] and document["yaml"] == PAYLOADS["aliases"]
    assert "anchors and aliases" in document["problems"][0]["message"]

    viewer = console_users(url, token, vera="viewer")["vera"]
    page, took = _timed(viewer.get, "/rules", timeout=120)
    assert page.status_code == 200 and took < PROMPT_S
    assert "anchors and aliases" in page.text
