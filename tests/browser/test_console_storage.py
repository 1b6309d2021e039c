"""The Storage pages in Debian's Chromium against a real `coreplane serve` and the real S3
server: an operator logs in, creates a bucket (encrypted by default), uploads a file through
the form, sees it listed with its encryption state, shares it (the link downloads the same
bytes with httpx) and revokes the link (it answers 410); screenshots under var/screenshots/.
The storage pages pass axe-core's WCAG A and AA rules and best practices, as every other page
does (tests/browser/test_console_a11y.py)."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_console_a11y import AXE_JS, RUN_AXE, TAGS
from tests.browser.test_console_home import SCREENSHOTS
from tests.browser.test_console_live import _page, chromium
from tests.support.console import console_users
from tests.support.serve import private_serve
from tests.support.storage import bucket_name, purge, raw_client


def test_an_operator_uploads_shares_and_revokes_from_the_console(services, tmp_path):
    raw = raw_client(services)
    name = bucket_name("browser")
    body = secrets.token_bytes(50_000)
    upload = tmp_path / "report.bin"
    upload.write_bytes(body)
    try:
        with private_serve(tmp_path) as (url, token, _log), chromium() as browser:
            for client in console_users(url, token, otto="operator").values():
                client.close()
            page = _page(browser, url, username="otto")
            page.click('nav.pages a[href="/storage"]')
            page.fill('#storage-create input[name="name"]', name)
            expect(page.locator('#storage-create input[name="encryption"]')).to_be_checked()
            page.click("#storage-create-button")
            page.wait_for_url(f"**/storage/{name}")
            assert raw.bucket_exists(name)

            page.set_input_files("#storage-file", str(upload))
            page.fill('#storage-upload input[name="prefix"]', "reports/")
            page.click("#storage-upload-button")
            row = page.locator('#storage-objects tr[data-key="reports/report.bin"]')
            expect(row).to_be_visible()
            expect(row.locator("[data-encryption]")).to_have_attribute("data-encryption", "SSE-S3")
            assert raw.get_object(name, "reports/report.bin").read() == body
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / "storage-bucket.png", full_page=True)

            row.locator("td a").first.click()
            page.fill('#storage-share input[name="expires_hours"]', "1")
            page.fill('#storage-share input[name="max_downloads"]', "3")
            page.click("#storage-share-button")
            link = page.locator("#storage-share-url").input_value()
            assert link.startswith(f"{url}/s/"), link
            got = httpx.get(link, follow_redirects=True, timeout=30)
            assert got.status_code == 200 and got.content == body
            page.screenshot(path=SCREENSHOTS / "storage-shared.png", full_page=True)

            page.locator("#storage-shares button.revoke").click()
            expect(page.locator('#storage-shares [data-figure="state"]')).to_contain_text("revoked")
            expect(page.locator('#storage-shares [data-figure="downloads"]')).to_have_text("1 of 3")
            assert httpx.get(link, timeout=30).status_code == 410
            assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        purge(raw, name)


def test_the_storage_pages_pass_axe(services, tmp_path):
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `scripts/services.sh up chromium` (it installs axe-core)")
    raw = raw_client(services)
    name = bucket_name("a11y")
    upload = tmp_path / "notes.txt"
    upload.write_text("accessible\n")
    try:
        with private_serve(tmp_path) as (url, token, _log), chromium() as browser:
            # axe is injected as an inline script, which the console's CSP refuses.
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, base_url=url, bypass_csp=True
            )
            page = context.new_page()
            page.goto("/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/$"))
            page.goto("/storage")
            _passes_axe(page, "buckets")
            page.fill('#storage-create input[name="name"]', name)
            page.check('#storage-create input[name="versioning"]')
            page.click("#storage-create-button")
            page.wait_for_url(f"**/storage/{name}")
            page.set_input_files("#storage-file", str(upload))
            page.click("#storage-upload-button")
            expect(page.locator('#storage-objects tr[data-key="notes.txt"]')).to_be_visible()
            _passes_axe(page, "bucket")
            page.locator('#storage-objects tr[data-key="notes.txt"] td a').first.click()
            _passes_axe(page, "object")
            page.click("#storage-share-button")
            expect(page.locator("#storage-share-url")).to_be_visible()
            _passes_axe(page, "shared")
    finally:
        purge(raw, name)


def _passes_axe(page: Page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.add_script_tag(path=AXE_JS)
    violations = page.evaluate(RUN_AXE, TAGS)
    found = [f"{v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in violations]
    assert not found, f"{name} ({page.url}) breaks {len(found)} axe rule(s):\n" + "\n".join(found)
