"""The client examples docs/realtime.md quotes work against a real `coreplane serve` on the
Redis layer: the Python one follows a room across a server restart (resuming with
``since``: every message once, in order); the browser one, in headless Chromium, shows a
message published through the API and publishes one of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.test_console_home import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import free_port, stop
from tests.support.realtime import mint, room, rt_serve, ws_url
from tests.support.serve import ControlPlane
from tests.support.services import ROOT
from tests.support.timing import until

pytestmark = pytest.mark.integration

EXAMPLES = ROOT / "docs" / "examples"
WAIT_S = 60.0  # a loaded machine; the client backs off up to 15 s between attempts


def publish(cp: ControlPlane, name: str, data: object) -> int:
    answer = httpx.post(
        f"{cp.url}/api/v1/realtime/rooms/{name}/messages",
        json={"data": data, "sender": "docs-test"},
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["seq"]


def printed(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_the_python_example_follows_a_room_across_a_server_restart(tmp_path):
    name, port = room("docs"), free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    process = None
    try:
        with rt_serve(port=port) as one:  # type: ignore[arg-type]
            token = mint(one, "reader", [name], ttl_s=3600)
            assert [publish(one, name, {"n": n}) for n in (1, 2)] == [1, 2]  # before: from history
            argv = [sys.executable, str(EXAMPLES / "realtime_client.py"), "--url", ws_url(one),
                    "--room", name, "--token", token, "--since", "0", "--count", "6", "--heartbeat", "1"]  # fmt: skip
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
            logs = err.read_text  # shown when a wait times out
            until("the two stored messages", lambda: len(printed(out)) >= 2, WAIT_S, logs=logs)
            assert publish(one, name, {"n": 3}) == 3  # live
            until("the live message", lambda: len(printed(out)) >= 3, WAIT_S, logs=logs)
        # The server stopped (the client was told to reconnect); another takes its address,
        # on the same store (so the same token secret) and the same Redis (the same history).
        with rt_serve(one.env["COREPLANE_DATABASE_URL"], port=port) as two:  # type: ignore[arg-type]
            assert [publish(two, name, {"n": n}) for n in (4, 5, 6)] == [4, 5, 6]
            process.wait(timeout=WAIT_S)
        assert process.returncode == 0, err.read_text()
        lines = printed(out)
        assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5, 6], err.read_text()
        assert [line["data"] for line in lines] == [{"n": n} for n in range(1, 7)]
        assert {line["from"] for line in lines} == {"docs-test"}
        assert "closed (1012)" in err.read_text()  # it did go through a restart
    finally:
        if process is not None:
            stop(process)


def test_the_python_example_follows_a_room_that_started_over_on_a_restarted_memory_server(tmp_path):
    # Without Redis a restart forgets every room: its sequence starts over at 1. The client
    # resumes with since=2, is told it did not recover, and follows the new sequence.
    name, port = room("docs-mem"), free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    process = None
    try:
        with rt_serve(redis=False, port=port) as one:  # type: ignore[arg-type]
            token = mint(one, "reader", [name], ttl_s=3600)
            argv = [sys.executable, str(EXAMPLES / "realtime_client.py"), "--url", ws_url(one),
                    "--room", name, "--token", token, "--count", "4", "--heartbeat", "1"]  # fmt: skip
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
            logs = err.read_text
            until("the subscription", lambda: f"subscribed to {name} at 0" in logs(), WAIT_S, logs=logs)
            assert [publish(one, name, {"n": n}) for n in (1, 2)] == [1, 2]
            until("two messages", lambda: len(printed(out)) >= 2, WAIT_S, logs=logs)
        with rt_serve(one.env["COREPLANE_DATABASE_URL"], redis=False, port=port) as two:  # type: ignore[arg-type]
            until(
                "the resubscription",
                lambda: logs().count(f"subscribed to {name} at 0") == 2,
                WAIT_S,
                logs=logs,
            )
            assert [publish(two, name, {"n": n}) for n in (3, 4)] == [1, 2]  # the room started over
            process.wait(timeout=WAIT_S)
        assert process.returncode == 0, logs()
        lines = printed(out)
        assert [(line["seq"], line["data"]) for line in lines] == [
            (1, {"n": 1}), (2, {"n": 2}), (1, {"n": 3}), (2, {"n": 4})]  # fmt: skip
        assert "history no longer reaches back to 2" in logs()
    finally:
        if process is not None:
            stop(process)


def _page_script() -> str:
    page = (EXAMPLES / "realtime_client.html").read_text()
    found = re.search(r'<script id="realtime-client">(.*?)</script>', page, re.S)
    assert found, "docs/examples/realtime_client.html has no <script id=realtime-client>"
    return found.group(1)


def test_the_browser_example_script_parses():
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "realtime_client.js"
        script.write_text(_page_script())
        checked = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_the_browser_example_shows_room_messages_and_publishes():
    from playwright.sync_api import expect, sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `scripts/services.sh up chromium`")
    name = room("docs-web")
    with rt_serve() as cp, sync_playwright() as pw:
        token = mint(cp, "browser", [name], ttl_s=3600)
        query = urlencode({"url": ws_url(cp), "room": name, "token": token})
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{(EXAMPLES / 'realtime_client.html').as_uri()}?{query}")
            expect(page.locator("#status")).to_have_text("live at 0", timeout=WAIT_S * 1000)
            publish(cp, name, {"text": "from the API"})
            expect(page.locator('#messages li[data-seq="1"]')).to_have_text(
                'docs-test: {"text":"from the API"}', timeout=WAIT_S * 1000
            )
            page.fill("#text", "from the page")
            page.click("#send button")
            expect(page.locator('#messages li[data-seq="2"]')).to_have_text(
                'browser: {"text":"from the page"}', timeout=WAIT_S * 1000
            )
            stored = httpx.get(
                f"{cp.url}/api/v1/realtime/rooms/{name}/messages",
                headers={"Authorization": f"Bearer {cp.token}"},
                timeout=10,
            ).json()
            assert [(m["seq"], m["from"], m["data"]) for m in stored] == [
                (1, "docs-test", {"text": "from the API"}), (2, "browser", {"text": "from the page"})]  # fmt: skip
            assert page.locator("#messages li").count() == 2  # each once
            assert errors == []
        finally:
            browser.close()


def test_the_excerpts_in_docs_realtime_md_are_the_examples_own_text():
    doc = (ROOT / "docs" / "realtime.md").read_text()
    clients = doc.split("\n## Clients\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(python|js)\n(.*?)```", clients, re.S)
    sources = {"python": "realtime_client.py", "js": "realtime_client.html"}
    assert {lang for lang, _ in blocks} == set(sources)
    for lang, block in blocks:
        assert block in (EXAMPLES / sources[lang]).read_text(), f"not in {sources[lang]}:\n{block}"
