"""The console in Debian's Chromium, driven by Playwright, against real services: an
operator watches the overview list what scripts/ started, sees a Redis turn critical
without reloading when it is killed, triggers a cache invalidation and watches it succeed;
a viewer has no trigger and the server refuses a forged one; every page renders without a
JavaScript error (screenshots under var/screenshots/); a page whose server restarts
reconnects and catches up on what changed while it was away."""

from __future__ import annotations

import os
import re
import secrets
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from agents.config import TargetConfig
from agents.daemon import default_config
from tests.browser.test_console_home import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.support.agents import running_agent
from tests.support.console import TEST_PASSWORD, console_users, csrf_of
from tests.support.processes import free_port
from tests.support.redis_topology import redis_topology
from tests.support.serve import migrate, start_serve

PAGES = ["/", "/services", "/explore", "/events", "/actions", "/rules", "/agents"]
ADMIN_PAGES = ["/users", "/settings"]
LIVE_S = 15_000  # ms a pushed change may take on a loaded CI machine


@contextmanager
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `scripts/services.sh up chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _page(browser, url: str, username: str | None = None, token: str | None = None) -> Page:  # type: ignore[no-untyped-def]
    page = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"{page.url}: {msg.text}"))
    page.js_errors = errors  # type: ignore[attr-defined]
    page.goto("/login")
    if token:
        page.fill("#token", token)
    else:
        page.fill("#username", username or "")
        page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    return page


def test_operator_watches_a_backend_fail_and_an_invalidation_succeed(
    control_plane_sqlite, services, tmp_path
):
    url, token, _log = control_plane_sqlite
    for client in console_users(url, token, otto="operator", vera="viewer").values():
        client.close()
    targets = default_config(services, "browser-agent", tmp_path).targets
    with redis_topology(replicas=0) as lab:
        lab_address = f"127.0.0.1:{lab.primary.port}"
        targets.append(TargetConfig(type="redis", name="lab", address=f"redis://{lab_address}/0"))
        for target in targets:
            target.interval_s = 1.0
        with running_agent(url, token, tmp_path, *targets, name="browser-agent"), chromium() as browser:
            page = _page(browser, url, username="otto")
            # The overview lists what scripts/ started, as the agent reports it.
            for service in ("redis", "postgres", "memcached", "rabbitmq", "elasticsearch", "s3", "haproxy"):
                expect(page.locator(f'tr[data-service="{service}"] .cell[data-health="passing"]').first) \
                    .to_be_visible(timeout=LIVE_S)  # fmt: skip
            lab_cell = page.locator(f'.cell[data-instance="{lab_address}"]')
            expect(lab_cell).to_have_attribute("data-health", "passing", timeout=LIVE_S)
            expect(page.locator("body")).to_have_attribute("data-live", "open")
            page.evaluate("window.notReloaded = true")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / "overview.png", full_page=True)

            lab.primary.kill()  # a real kill: the agent's probe fails and it pushes at once
            expect(lab_cell).to_have_attribute("data-health", "critical", timeout=LIVE_S)
            assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
            expect(page.locator('tr[data-service="lab"]')).to_have_attribute("data-worst", "critical")

            # An operator triggers a cache invalidation and watches it succeed, live.
            tag = f"browser-{uuid.uuid4().hex[:6]}"
            page.goto("/actions")
            page.select_option("#kind", "cache.invalidate")
            page.select_option("#target", "redis")
            page.fill("#tags", tag)
            page.fill("#reason", "browser test")
            page.click("#preview")
            expect(page.locator("ol.plan")).to_contain_text(f"Bump the tag versions of {tag}")
            page.click("#confirm")
            expect(page.locator('[data-state="succeeded"]').first).to_be_visible(timeout=LIVE_S)
            page.goto("/")
            recent = page.locator('#recent-actions tr[data-kind="cache.invalidate"]').first
            expect(recent).to_have_attribute("data-state", "succeeded")

            # A viewer: no trigger on the page, and the server refuses a forged one.
            viewer = _page(browser, url, username="vera")
            viewer.goto("/actions")
            expect(viewer.locator("h1")).to_have_text("Actions")
            assert viewer.locator("#preview").count() == 0
            csrf = csrf_of(viewer.content())
            forged = viewer.request.post(
                "/actions/confirm",
                form={
                    "csrf": csrf,
                    "kind": "cache.invalidate",
                    "target": "redis",
                    "tags": tag,
                    "namespace": "default",
                    "idempotency_key": uuid.uuid4().hex,
                },
            )
            assert forged.status == 403

            # Every page renders for its role, without a JavaScript error.
            admin = _page(browser, url, token=token)
            for who, paths in ((page, PAGES), (viewer, PAGES), (admin, PAGES + ADMIN_PAGES)):
                for path in paths:
                    answer = who.goto(path)
                    assert answer is not None and answer.status == 200, (path, answer and answer.status)
                    who.wait_for_load_state("networkidle")
                    if who is admin:
                        name = path.strip("/") or "overview"
                        who.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
            # ... and the pages reached through links: the killed instance's (its timeline
            # holds the transition to critical) and the invalidation's.
            admin.goto("/")
            action_href = admin.locator("#recent-actions a").first.get_attribute("href")
            for name, path in (
                ("instance", f"/services/lab/instances/{lab_address}"),
                ("action", action_href),
            ):
                answer = admin.goto(path or "")
                assert answer is not None and answer.status == 200, (path, answer and answer.status)
                admin.wait_for_load_state("networkidle")
                if name == "instance":
                    expect(admin.locator("#timeline")).to_contain_text("critical")
                admin.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
            for who in (page, viewer, admin):
                assert who.js_errors == []  # type: ignore[attr-defined]


def test_a_page_reconnects_and_catches_up_after_a_server_restart(tmp_path):
    from controlplane.catalog.instances import InstanceReport, report
    from controlplane.clock import utcnow
    from controlplane.store.db import make_engine, make_sessionmaker

    port, token = free_port(), secrets.token_urlsafe(32)
    database_url = f"sqlite:///{tmp_path}/store.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {"COREPLANE_DATABASE_URL": database_url, "COREPLANE_ADMIN_TOKEN": token,
            "COREPLANE_SERVER__PORT": str(port)}  # fmt: skip
    migrate(env)
    url, admin = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    serve = start_serve(env, tmp_path / "serve.log")
    try:
        first = {"service": "web", "kind": "http", "address": "10.0.0.1:80", "status": "passing"}
        assert httpx.post(f"{url}/api/v1/services/register", json=[first], headers=admin).status_code == 202
        with chromium() as browser:
            page = _page(browser, url, token=token)
            expect(page.locator('.cell[data-instance="10.0.0.1:80"]')).to_be_visible()
            expect(page.locator("body")).to_have_attribute("data-live", "open")
            page.evaluate("window.notReloaded = true")

            assert page.js_errors == []  # type: ignore[attr-defined]
            serve.terminate()
            assert serve.wait(timeout=15) is not None
            expect(page.locator("body")).to_have_attribute("data-live", "reconnecting", timeout=LIVE_S)
            # While the page is away, the catalog changes (written straight to the store).
            engine = make_engine(database_url)
            with make_sessionmaker(engine).begin() as session:
                missed = InstanceReport(service="web", kind="http", address="10.0.0.2:80", status="critical")
                report(session, missed, agent_id=None, now=utcnow() - timedelta(seconds=1), hold_s=0)
            engine.dispose()

            serve = start_serve(env, tmp_path / "serve.log")
            expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=LIVE_S)
            # While the server was down Chromium and htmx logged each refused reconnect;
            # from the reconnect on, nothing.
            page.js_errors.clear()  # type: ignore[attr-defined]
            missed_cell = page.locator('.cell[data-instance="10.0.0.2:80"]')
            expect(missed_cell).to_have_attribute("data-health", "critical", timeout=LIVE_S)
            assert page.evaluate("window.notReloaded") is True, "caught up by reloading, not over the socket"
            assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        serve.kill()
        serve.wait()


def test_an_event_opened_in_the_live_tail_stays_open_when_new_ones_arrive(control_plane_sqlite):
    url, token, _ = control_plane_sqlite

    def ingest(message: str) -> None:
        event = {"event_type": "deploy", "service_name": "web", "status": "passing",
                 "timestamp": datetime.now(UTC).isoformat(), "details": {"message": message}}  # fmt: skip
        answer = httpx.post(f"{url}/api/v1/ingest", headers={"Authorization": f"Bearer {token}"},
                            json={"batch_id": uuid.uuid4().hex, "agent": "browser", "events": [event]})  # fmt: skip
        assert answer.status_code == 202, answer.text

    ingest("first")
    with chromium() as browser:
        page = _page(browser, url, token=token)
        page.goto("/events")
        expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=LIVE_S)
        opened = page.locator("tr[data-event] details").first
        opened.locator("summary").click()
        expect(opened).to_have_attribute("open", "")
        ingest("second")  # the live tail pushes the table again, with the new row on top
        expect(page.locator("tr[data-event]")).to_have_count(2, timeout=LIVE_S)
        expect(page.locator("tr[data-event] details").nth(1)).to_have_attribute("open", "")
        expect(page.locator("tr[data-event] details").first).not_to_have_attribute("open", "")
        assert page.js_errors == []  # type: ignore[attr-defined]
