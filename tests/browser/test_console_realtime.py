"""The Realtime page in Debian's Chromium against a real `coreplane serve` on the Redis
channel layer: a room published to through the API appears in the open page's live list
without a reload, and its page shows the message (screenshots under var/screenshots/)."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.browser.test_console_home import SCREENSHOTS
from tests.browser.test_console_live import LIVE_S, _page, chromium
from tests.support.console import console_users
from tests.support.realtime import room, rt_serve


def test_a_published_room_appears_in_the_live_list_without_a_reload(services):
    with rt_serve(server__live_tick_s="1") as cp, chromium() as browser:
        for client in console_users(cp.url, cp.token, vera="viewer").values():
            client.close()
        page = _page(browser, cp.url, username="vera")
        page.goto("/realtime")
        expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=LIVE_S)
        page.evaluate("window.notReloaded = true")
        name = room("browser")
        row = page.locator(f'#rt-rooms tr[data-room="{name}"]')
        expect(row).to_have_count(0)

        answer = httpx.post(f"{cp.url}/api/v1/realtime/rooms/{name}/messages", json={"data": {"text": "hi"}},
                            headers={"Authorization": f"Bearer {cp.token}"}, timeout=10)  # fmt: skip
        assert answer.status_code == 201, answer.text
        expect(row).to_be_visible(timeout=LIVE_S)  # pushed over the console's websocket on a tick
        expect(row.locator('[data-figure="last-seq"]')).to_have_text("1")
        assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "realtime.png", full_page=True)

        row.locator("a").click()
        expect(page.locator('#rt-history tr[data-seq="1"] pre')).to_contain_text('"text": "hi"')
        page.screenshot(path=SCREENSHOTS / "realtime-room.png", full_page=True)
        assert page.js_errors == []  # type: ignore[attr-defined]
