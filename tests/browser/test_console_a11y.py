"""Every console page passes axe-core's WCAG 2.0, 2.1 and 2.2 A and AA rules and its best
practices in Debian's Chromium, logged in, with data on it: a real agent watching the real
services, an instance with a health history and metrics, an event, an action, a storage
bucket made and filled through its forms (on the real S3 server). axe-core
comes from the npm registry (scripts/services/chromium.sh installs the pinned version under
var/node); a failure lists each violation's rule, impact and the selectors of the nodes
that break it."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from agents.daemon import default_config
from tests.browser.test_console_home import CHROMIUM, CHROMIUM_ARGS
from tests.support.agents import running_agent
from tests.support.console import accepted, chart_points
from tests.support.serve import private_serve
from tests.support.services import SERVICES_ENV
from tests.support.storage import bucket_name, purge, raw_client

AXE_JS = Path(
    os.environ.get(
        "COREPLANE_TEST_AXE", SERVICES_ENV.parent / "node" / "node_modules" / "axe-core" / "axe.min.js"
    )
)
# WCAG 2.0 to 2.2 at levels A and AA, and axe's best practices (landmarks named and unique,
# headings in order): the console passes them all, so each one is held.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
WEB = {"service": "web", "kind": "http", "address": "10.0.0.1:80", "status": "passing"}
METRIC = "coreplane_web_requests_per_second"
LIVE_S = 15_000  # ms the agent's first reports and an action may take on a loaded CI machine
INSTANCE = f"/services/web/instances/{quote(WEB['address'], safe='')}"
STORED = "notes.txt"  # the object in the seeded bucket
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => n.target.join(" ") + (n.failureSummary ? ": " + n.failureSummary.replace(/\\s+/g, " ") : "")),
  }));
}"""


class Console:
    """The module's logged-in browser and what the pages need to reach the seeded data."""

    def __init__(self, url: str, token: str, browser) -> None:  # type: ignore[no-untyped-def]
        self.url, self.token, self.browser = url, token, browser
        self.page = self.new_page()
        self.page.goto("/login")
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r"/$"))
        self.action = ""
        self.bucket = ""

    def new_page(self) -> Page:
        # The console's CSP refuses inline scripts, and axe is injected as one: the policy
        # itself is tested in test_console_csp.py.
        context = self.browser.new_context(viewport={"width": 1280, "height": 900}, base_url=self.url,
                                           bypass_csp=True)  # fmt: skip
        return context.new_page()


def _seed(url: str, token: str) -> None:
    """An instance that turned critical and came back, one warning, metrics for the charts, an event."""
    for status in ("passing", "critical", "passing"):
        accepted(url, token, "/api/v1/services/register", [WEB | {"status": status}])
    # Every health colour on the pages: white on amber must pass too.
    accepted(url, token, "/api/v1/services/register", [WEB | {"address": "10.0.0.2:80", "status": "warning"}])
    points = chart_points(METRIC, "web", WEB["address"])
    now = datetime.now(UTC)
    event = {"event_type": "deploy", "service_name": "web", "status": "passing",
             "timestamp": now.isoformat(), "details": {"message": "web 1.2 rolled out"}}  # fmt: skip
    accepted(url, token, "/api/v1/ingest", {"batch_id": uuid.uuid4().hex, "agent": "a11y", "metrics": points,
                                            "events": [event]})  # fmt: skip


def _preview_invalidation(page: Page) -> None:
    """The actions form filled in and previewed: the page that asks to confirm."""
    page.goto("/actions")
    expect(page.locator('#target option[value="redis"]')).to_have_count(1, timeout=LIVE_S)
    page.select_option("#kind", "cache.invalidate")
    page.select_option("#target", "redis")
    page.fill("#tags", f"a11y-{uuid.uuid4().hex[:6]}")
    page.fill("#reason", "accessibility test")
    page.click("#preview")
    expect(page.locator("ol.plan")).to_be_visible()


def _seed_bucket(page: Page, name: str, upload: Path) -> None:
    """A versioned bucket made through the create form, and ``upload`` sent through its upload form."""
    page.goto("/storage")
    page.fill('#storage-create input[name="name"]', name)
    page.check('#storage-create input[name="versioning"]')
    page.click("#storage-create-button")
    page.wait_for_url(f"**/storage/{name}")
    page.set_input_files("#storage-file", str(upload))
    page.click("#storage-upload-button")
    expect(page.locator(f'#storage-objects tr[data-key="{upload.name}"]')).to_be_visible()


@pytest.fixture(scope="module")
def console(tmp_path_factory, services):  # type: ignore[no-untyped-def]
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `scripts/services.sh up chromium` (it installs axe-core)")
    tmp = tmp_path_factory.mktemp("a11y")
    with private_serve(tmp) as (url, token, _log):
        _seed(url, token)
        targets = default_config(services, "a11y-agent", tmp).targets
        with running_agent(url, token, tmp, *targets, name="a11y-agent"), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            console = Console(url, token, browser)
            # The agent's reports: the overview lists the redis it watches.
            expect(console.page.locator('tr[data-service="redis"] .cell').first).to_be_visible(timeout=LIVE_S)
            _preview_invalidation(console.page)
            console.page.click("#confirm")
            expect(console.page.locator('[data-state="succeeded"]').first).to_be_visible(timeout=LIVE_S)
            console.action = console.page.url
            raw, console.bucket = raw_client(services), bucket_name("a11y")
            upload = tmp / STORED
            upload.write_text("accessible\n")
            try:
                _seed_bucket(console.page, console.bucket, upload)
                yield console
            finally:
                purge(raw, console.bucket)
            browser.close()


def _goto(path: str) -> Callable[[Console], Page]:
    def open_page(console: Console) -> Page:
        answer = console.page.goto(path)
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        return console.page

    return open_page


def _login_page(console: Console) -> Page:
    page = console.new_page()
    page.goto("/login")
    return page


def _action_page(console: Console) -> Page:
    return _goto(console.action)(console)


def _error_page(console: Console) -> Page:
    answer = console.page.goto("/no-such-page")
    assert answer is not None and answer.status == 404, answer and answer.status
    expect(console.page.locator("#error")).to_be_visible()
    return console.page


def _confirm_page(console: Console) -> Page:
    _preview_invalidation(console.page)
    return console.page


def _bucket_page(console: Console) -> Page:
    page = _goto(f"/storage/{console.bucket}")(console)
    expect(page.locator(f'#storage-objects tr[data-key="{STORED}"]')).to_be_visible()
    return page


def _object_page(console: Console) -> Page:
    return _goto(f"/storage/{console.bucket}/object?key={STORED}")(console)


def _shared_page(console: Console) -> Page:
    """The answer to the share form: the link, shown once."""
    page = _object_page(console)
    page.click("#storage-share-button")
    expect(page.locator("#storage-share-url")).to_be_visible()
    return page


PAGES: dict[str, Callable[[Console], Page]] = {
    "login": _login_page,
    "overview": _goto("/"),
    "services": _goto("/services"),
    "service": _goto("/services/web"),
    "instance": _goto(INSTANCE),
    "explore": _goto(f"/explore?metric={METRIC}&service=web&range=1h"),
    "events": _goto("/events"),
    "actions": _goto("/actions"),
    "action": _action_page,
    "confirm": _confirm_page,
    "rules": _goto("/rules"),
    "agents": _goto("/agents"),
    "settings": _goto("/settings"),
    "users": _goto("/users"),
    "tasks": _goto("/tasks"),
    "task-workers": _goto("/tasks/workers"),
    "task-queues": _goto("/tasks/queues"),
    "task-dead-letters": _goto("/tasks/dead-letters"),
    "task-analytics": _goto("/tasks/analytics"),
    "task-workflows": _goto("/tasks/workflows"),
    "task-schedules": _goto("/tasks/schedules"),
    "storage": _goto("/storage"),
    "storage-bucket": _bucket_page,
    "storage-object": _object_page,
    "storage-shared": _shared_page,
    "error": _error_page,
}


@pytest.mark.parametrize("name", list(PAGES))
def test_a_console_page_passes_axe(console, name):
    page = PAGES[name](console)
    page.wait_for_load_state("networkidle")
    page.add_script_tag(path=AXE_JS)
    violations = page.evaluate(RUN_AXE, TAGS)
    found = [
        f"{v['id']} ({v['impact']}): {v['help']}\n" + "\n".join(f"    {node}" for node in v["nodes"])
        for v in violations
    ]
    assert not found, f"{name} ({page.url}) breaks {len(found)} axe rule(s):\n" + "\n".join(found)
