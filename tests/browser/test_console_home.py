"""Debian's Chromium, driven by Playwright, loads the console against the real services."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from controlplane.backends import BACKENDS
from tests.support.services import ROOT

SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("COREPLANE_TEST_CHROMIUM", "/usr/bin/chromium")
# Flags for a closed network: no background fetches that the sandbox would refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `scripts/services.sh up chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.js_errors = errors
        yield page
        browser.close()


def test_console_home_shows_every_backend_reachable(page, control_plane):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(control_plane.url)
    assert page.url.endswith("/login")
    page.screenshot(path=SCREENSHOTS / "login.png")
    page.fill("#token", control_plane.token)
    page.click("button[type=submit]")
    page.wait_for_selector("table.backends")
    assert page.title() == "Overview · coreplane"
    names = ["store", *(b.name for b in BACKENDS)]
    for name in names:
        row = page.locator(f'tr[data-backend="{name}"]')
        assert row.get_attribute("data-state") == "up", f"{name}: {row.inner_text()}"
    # htmx refreshes the table in place every 5 s; wait for one swap and check it still holds.
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true", timeout=10000):
        pass
    assert page.locator("tr[data-backend]").count() == len(names)
    page.screenshot(path=SCREENSHOTS / "home.png", full_page=True)
    assert page.js_errors == []
