"""The console under its Content-Security-Policy in Debian's Chromium (issue 12, finding 9):
every page loads with the policy on and Chromium refuses nothing (no 'Refused to ...'
message, no securitypolicyviolation event), while what the pages do with JavaScript still
works: the live socket ('self' in connect-src covers ws: on the same host) pushes a new
instance onto the overview, uPlot draws the explorer's chart and the instance's strip and
charts, and the rules editor shows a 422 preview in place (a listener in forms.js, since
htmx runs without eval)."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import httpx
from playwright.sync_api import Page, expect

from tests.browser.test_console_live import ADMIN_PAGES, LIVE_S, PAGES, chromium
from tests.browser.test_console_tasks import PAGES as TASK_PAGES
from tests.e2e.test_console_security_headers import assert_secure_headers
from tests.support.console import accepted, chart_points

FIRST = {"service": "web", "kind": "http", "address": "10.0.0.1:80", "status": "passing"}
SECOND = FIRST | {"address": "10.0.0.2:80", "status": "critical"}
METRIC = "coreplane_web_requests_per_second"
# Chromium's own words for what a policy blocked, on the console.
REFUSED = re.compile(r"Refused to|Content Security Policy", re.I)
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});
// htmx's own refusal of an hx-on / js: expression (allowEval is off): a page that needs it.
document.addEventListener("htmx:evalDisallowedError", function (e) {
  window.cspViolations.push("htmx eval refused on <" + e.target.tagName.toLowerCase() + ">");
});
"""


def _login(browser, url: str, token: str) -> Page:  # type: ignore[no-untyped-def]
    page = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url).new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    refused: list[str] = []
    page.on("console", lambda msg: REFUSED.search(msg.text) and refused.append(f"{page.url}: {msg.text}"))
    page.on("pageerror", lambda exc: refused.append(f"{page.url}: {exc}"))
    page.refused = refused  # type: ignore[attr-defined]
    page.goto("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    return page


def _open(page: Page, path: str) -> None:
    """Load ``path``, check the policy came with it, and that nothing was refused."""
    answer = page.goto(path)
    assert answer is not None and answer.status == 200, (path, answer and answer.status)
    headers = httpx.Response(200, headers=answer.all_headers(), request=httpx.Request("GET", path))
    assert_secure_headers(headers)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.cspViolations") == [], path
    assert page.refused == [], path  # type: ignore[attr-defined]


def test_every_page_loads_under_the_csp_with_nothing_refused_and_still_works(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    accepted(url, token, "/api/v1/services/register", [FIRST])
    points = chart_points(METRIC, "web", FIRST["address"])
    accepted(
        url, token, "/api/v1/ingest", {"batch_id": uuid.uuid4().hex, "agent": "csp-test", "metrics": points}
    )
    instance = f"/services/web/instances/{quote(FIRST['address'], safe='')}"
    with chromium() as browser:
        page = _login(browser, url, token)
        for path in [*PAGES, *ADMIN_PAGES, *TASK_PAGES, "/services/web", instance]:
            _open(page, path)

        # The explorer's chart and the instance's strip are drawn (uPlot, an SVG).
        _open(page, f"/explore?metric={METRIC}&service=web&range=1h")
        expect(page.locator(".explore-chart .uplot canvas")).to_be_visible()
        _open(page, instance)
        expect(page.locator('svg.strip rect[data-health="passing"]')).to_be_visible()

        # The live socket: an instance registered after the page loaded appears on it.
        _open(page, "/")
        expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=LIVE_S)
        page.evaluate("window.notReloaded = true")
        accepted(url, token, "/api/v1/services/register", [SECOND])
        cell = page.locator(f'.cell[data-instance="{SECOND["address"]}"]')
        expect(cell).to_have_attribute("data-health", "critical", timeout=LIVE_S)
        assert page.evaluate("window.notReloaded") is True, "caught up by reloading, not over the socket"

        # The rules editor shows a refused preview (422) in place, without leaving the page.
        _open(page, "/rules")
        page.evaluate("window.notReloaded = true")
        page.fill("#rules-yaml", "- name: [unclosed")
        page.click("#preview-button")
        expect(page.locator('#preview [role="alert"]').first).to_be_visible(timeout=LIVE_S)
        assert page.evaluate("window.notReloaded") is True, "the preview left the page"

        assert page.evaluate("window.cspViolations") == []
        assert page.refused == []  # type: ignore[attr-defined]
