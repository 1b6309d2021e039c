"""The Storage pages in Debian's Chromium against a real `coreplane serve` and the real S3
server: an operator logs in, creates a bucket (encrypted by default), uploads a file through
the form, sees it listed with its encryption state, shares it (the link downloads the same
bytes with httpx) and revokes the link (it answers 410); screenshots under var/screenshots/.
The storage pages' axe-core checks are tests/browser/test_console_a11y.py's, with every other
page's."""

from __future__ import annotations

import secrets

import httpx
from playwright.sync_api import expect

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
