"""`coreplane dashboards push` against a recorded exchange with Grafana's HTTP API
(grafana_push_exchange.json): no Grafana can run where the tests run (see
docs/observability.md), so a local server replays Grafana's side of the exchange, in order,
and refuses any request the recording does not have at that point."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = json.loads(Path(__file__).with_name("grafana_push_exchange.json").read_text())
TOKEN = "glsa_recorded-exchange-token"


def contains(whole: Any, part: Any) -> bool:
    """``part`` is in ``whole``: every key of a dict part with a value it contains, else equal."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and contains(whole[k], v) for k, v in part.items())
    return whole == part


class Replay(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReplayHandler)
        self.script: list[dict] = []
        self.received: list[dict] = []
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ReplayHandler(BaseHTTPRequestHandler):
    server: Replay

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        got = {"method": self.command, "path": self.path, "json": body,
               "authorization": self.headers.get("Authorization")}  # fmt: skip
        self.server.received.append(got)
        expected = self.server.script.pop(0) if self.server.script else None
        want = expected and expected["request"]
        if (
            not want
            or (want["method"], want["path"]) != (got["method"], got["path"])
            or not contains(body, want.get("json"))
        ):
            self.server.refused.append(f"{self.command} {self.path}: expected {want}")
            self._send(500, {"message": "not in the recorded exchange"})
            return
        self._send(expected["response"]["status"], expected["response"]["json"])

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reports what it received."""


@pytest.fixture
def grafana() -> Iterator[Replay]:
    server = Replay()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def push(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "coreplane"), "dashboards", "push",
                           "--grafana-url", url, "--token", TOKEN],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def committed() -> dict[str, dict]:
    paths = (ROOT / "dashboards" / "json").glob("*.json")
    return {d["uid"]: d for d in (json.loads(p.read_text()) for p in paths)}


def replay(grafana: Replay, part: str) -> subprocess.CompletedProcess:
    grafana.script, grafana.received, grafana.refused = list(EXCHANGE[part]), [], []
    done = push(grafana.url)
    assert not grafana.refused, grafana.refused
    assert done.returncode == 0, done.stderr
    assert grafana.script == [], f"the push stopped before the end of {part}"
    return done


def saved(grafana: Replay) -> list[dict]:
    return [r["json"] for r in grafana.received if r["path"] == "/api/dashboards/db"]


def test_first_push_creates_the_folder_and_sends_every_committed_dashboard_as_it_is(grafana):
    done = replay(grafana, "first_push")
    dashboards = committed()
    assert {r["authorization"] for r in grafana.received} == {f"Bearer {TOKEN}"}
    bodies = saved(grafana)
    assert bodies[0]["dashboard"]["uid"] == "coreplane-overview"
    assert sorted(b["dashboard"]["uid"] for b in bodies) == sorted(dashboards)
    for body in bodies:
        # The JSON build.py generated, unchanged but for the database id Grafana matches by uid.
        assert body["dashboard"] == {**dashboards[body["dashboard"]["uid"]], "id": None}
        assert (body["folderUid"], body["overwrite"]) == ("coreplane", True)
    lines = done.stdout.splitlines()
    assert len(lines) == len(dashboards)
    overview = dashboards["coreplane-overview"]["title"]
    assert lines[0] == f"coreplane-overview\t{overview}\tversion 1\t/d/coreplane-overview/coreplane-overview"
    assert f"{len(dashboards)} dashboard(s) in folder 'coreplane'" in done.stderr


def test_second_push_finds_the_folder_and_replaces_each_dashboard(grafana):
    replay(grafana, "first_push")
    done = replay(grafana, "second_push")
    assert [r["path"] for r in grafana.received if r["method"] == "POST"] == ["/api/dashboards/db"] * len(
        committed()
    ), "a second push creates nothing: no folder, no copy"
    assert all(line.split("\t")[2] == "version 2" for line in done.stdout.splitlines()), done.stdout
