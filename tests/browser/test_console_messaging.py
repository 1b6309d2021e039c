"""The dead-letter pages in Debian's Chromium against a real `coreplane serve` (archiving a
test's vhost), a real `coreplane agent` and RabbitMQ: a dead letter appears on the open list
without a reload, an operator opens it and replays it (preview, confirm), and the message is
back in its queue with its body and message id (screenshots under var/screenshots/)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_console_home import SCREENSHOTS
from tests.browser.test_console_live import LIVE_S, _page, chromium
from tests.support.console import console_users
from tests.support.messaging import depth, take
from tests.support.messaging_dead import dead_letter, dead_letter_stack
from tests.support.timing import until


def test_an_operator_replays_a_dead_letter_from_the_console(services, tmp_path):
    with dead_letter_stack(services, tmp_path, agent=True) as stack, chromium() as browser:
        for client in console_users(stack.cp.url, stack.cp.token, otto="operator").values():
            client.close()
        page = _page(browser, stack.cp.url, username="otto")
        page.goto("/messaging/dead-letters?queue=orders")
        expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=LIVE_S)
        page.evaluate("window.notReloaded = true")

        dead_letter(
            stack.url, "orders", b'{"order": 42}', message_id="browser-42", error="TimeoutError: payment"
        )
        row = page.locator('#mq-dead-letters tr[data-message-id="browser-42"]')
        expect(row).to_be_visible(timeout=LIVE_S)  # pushed over the websocket
        expect(row).to_contain_text("TimeoutError: payment")
        assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "messaging-dead-letters.png", full_page=True)

        row.locator("td.when a").click()
        expect(page.locator("#dead-body")).to_have_text('{"order": 42}')
        page.screenshot(path=SCREENSHOTS / "messaging-dead-letter.png", full_page=True)
        page.click("#replay")
        expect(page.locator("ol.plan")).to_contain_text("Publish 1 archived dead letter(s)")
        page.fill("input[name=reason_text]", "payment service is back")
        page.click("#confirm")
        expect(page.locator('[data-state="succeeded"]').first).to_be_visible(timeout=LIVE_S * 2)

        until("the replayed message in orders", lambda: depth(stack.url, "orders") == 1, 15, 0.1)
        (back,) = take(stack.url, "orders")
        assert back.body == b'{"order": 42}' and back.properties["message_id"] == "browser-42"
        page.goto("/messaging/dead-letters?state=replayed")
        expect(page.locator('tr[data-message-id="browser-42"] [data-state="replayed"]')).to_be_visible()
        assert page.js_errors == []  # type: ignore[attr-defined]
