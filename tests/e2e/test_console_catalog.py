"""The console's catalog pages against a real `coreplane serve`, a real agent and the real
Redis: the Services page lists the instance with its health; the instance page shows its
facts, its health history and charts with points; a critical status registered over the
API becomes a transition the page shows, pushed over the live socket too; unknown
services and instances are 404 pages that say so; a viewer can open all of them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from urllib.parse import quote

import httpx
from websockets.sync.client import connect

from agents.config import TargetConfig
from agents.runtime import instance_of
from tests.support.agents import running_agent
from tests.support.console import console_login, console_users, page_with, pushed_with
from tests.support.processes import free_port
from tests.support.serve import private_serve, start_serve
from tests.support.services import require
from tests.support.stores import fresh_schema
from tests.support.timing import until


def _charts(page: str) -> list[dict]:
    return [json.loads(raw) for raw in re.findall(r"data-chart='([^']*)'", page)]


def _with_a_point(page: str) -> str | None:
    """``page`` if one of its charts has a point."""
    charts = _charts(page)
    return page if any(v is not None for c in charts for s in c["series"] for v in s["values"]) else None


def _strip(page: str) -> str:
    """The health strip's segments."""
    return re.search(r'<svg class="strip".*?</svg>', page, re.S).group(0)


def test_services_and_instance_pages_show_the_real_redis(control_plane_sqlite, services, tmp_path):
    require(services.redis.url, "redis")
    url, token, _log = control_plane_sqlite
    viewer = console_users(url, token, vera="viewer")["vera"]
    address = instance_of(services.redis.url)
    kv = TargetConfig(type="redis", name="kv", address=services.redis.url, role="primary", interval_s=1)
    with running_agent(url, token, tmp_path, kv, name="catalog-agent"):
        listed = page_with(viewer, "/services", f'data-instance="{address}" data-health="passing"',
                           "the agent's Redis as passing")  # fmt: skip
        href = f"/services/kv/instances/{quote(address, safe='')}"
        assert f'href="{href}"' in listed and "catalog-agent" in listed and "ws-connect=" in listed
        assert 'data-service="kv"' in listed

        one = viewer.get("/services/kv")
        assert one.status_code == 200 and f'data-instance="{address}"' in one.text
        missing = viewer.get("/services/no-such-service")
        assert (
            missing.status_code == 404
            and "No service &#39;no-such-service&#39; in the catalog" in missing.text
        )

        # The instance: facts, the unknown -> passing transition, and charts whose data has points.
        page = viewer.get(href).text
        assert 'id="facts"' in page and 'data-health="passing"' in page and "catalog-agent" in page
        assert 'data-transition="health" data-to="passing"' in page
        assert 'data-health="passing"' in _strip(page)
        page = until("a chart of the instance to get a point", lambda: _with_a_point(viewer.get(href).text))
        metrics = re.findall(r'data-metric="([^"]+)"', page)
        assert (
            "coreplane_redis_ops_per_second" in metrics
            and "coreplane_agent_probe_duration_seconds" in metrics
        )
        for span in ("15m", "6h", "24h"):
            ranged = viewer.get(href, params={"range": span})
            assert ranged.status_code == 200 and f'?range={span}" class="current"' in ranged.text
        bad_range = viewer.get(href, params={"range": "2y"})
        assert bad_range.status_code == 422 and "Unknown range &#39;2y&#39;" in bad_range.text
        unknown = viewer.get("/services/kv/instances/10.9.9.9%3A1")
        assert unknown.status_code == 404
        assert "Service &#39;kv&#39; has no instance &#39;10.9.9.9:1&#39;" in unknown.text
        assert viewer.get("/services/nope/instances/10.9.9.9%3A1").status_code == 404

        # The live socket sends the facts and the timeline on connect, then each change.
        cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
        ws_url = re.search(r'ws-connect="([^"]+)"', page).group(1).replace("&amp;", "&")
        with connect(
            url.replace("http", "ws") + ws_url, additional_headers={"Cookie": cookie, "Origin": url}
        ) as ws:
            first = ws.recv(timeout=10)
            assert 'id="facts"' in first and 'id="timeline"' in first
            message = "drill: marked critical by the e2e test"
            critical = {"service": "kv", "kind": "redis", "address": address, "status": "critical",
                        "message": message}  # fmt: skip
            registered = httpx.post(f"{url}/api/v1/services/register", json=[critical],
                                    headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert registered.status_code == 202, registered.text
            pushed = pushed_with(ws, 'data-to="critical"', "the critical transition")
            assert message in pushed

        # And the page itself, reloaded: passing -> critical with its message, newest first.
        page = viewer.get(href).text
        rows = re.findall(r'<tr data-transition="health" data-to="(\w+)">(.*?)</tr>', page, re.S)
        critical_row = next(body for to, body in rows if to == "critical")
        assert "passing" in critical_row and message in critical_row
        assert [to for to, _ in rows].index("critical") < [to for to, _ in rows].index("passing")
        assert 'data-health="critical"' in _strip(page) and 'data-health="passing"' in _strip(page)
        assert viewer.get("/services").text.count('data-health="critical"') >= 1
    viewer.close()


def test_pages_need_a_session_and_the_empty_catalog_says_what_to_do(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    anonymous = httpx.get(f"{url}/services")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    viewer = console_users(url, token, vera="viewer")["vera"]
    empty = viewer.get("/services")
    assert (
        empty.status_code == 200
        and "docs/agents.md" in empty.text
        and "/api/v1/services/register" in empty.text
    )
    viewer.close()


NO_TICK_S = "3600"  # the live tick, out of a test's window: only changes render


def _renders(url: str, page: str) -> float:
    found = re.search(rf'^coreplane_console_live_render_seconds_count\{{page="{page}"\}} (\S+)$',
                      httpx.get(f"{url}/metrics").text, re.M)  # fmt: skip
    return float(found.group(1)) if found else 0.0


def test_sockets_on_the_same_page_share_one_render_per_change(services, tmp_path):
    """Eight operators watching the Services page: a change renders the page once, and
    every socket gets the push (no tick lands meanwhile: it is an hour)."""
    with private_serve(tmp_path, server__live_tick_s=NO_TICK_S) as (url, token, _log):
        _eight_sockets_one_render(url, token)


def _eight_sockets_one_render(url: str, token: str) -> None:
    users = console_users(url, token, vera="viewer")
    viewer = users["vera"]
    cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
    headers = {"Cookie": cookie, "Origin": url}
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(url.replace("http", "ws") + "/ws/console?page=services",
                                               additional_headers=headers)) for _ in range(8)]  # fmt: skip
        for ws in sockets:
            assert 'id="catalog"' in ws.recv(timeout=10)  # each socket's own catch-up render
        before = _renders(url, "services")
        assert before >= 8
        new = {"service": "shared", "kind": "redis", "address": "10.7.7.7:6379", "status": "passing"}
        answer = httpx.post(f"{url}/api/v1/services/register", json=[new],
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert answer.status_code == 202, answer.text
        for ws in sockets:
            pushed_with(ws, "10.7.7.7:6379", "the new instance on every socket")
        assert _renders(url, "services") - before == 1, "one render per change, not one per socket"
    for client in users.values():
        client.close()


def test_two_processes_on_a_redis_channel_layer_push_each_change_once(services, tmp_path):
    """Two `coreplane serve` on one PostgreSQL with COREPLANE_SERVER__CHANNEL_LAYER_URL set:
    a change made through one reaches a socket on the other (PostgreSQL NOTIFY, then that
    process's bridge over the Redis layer), rendered once there, not once per process."""
    require(services.postgres.url, "postgres")
    require(services.redis.url, "redis")
    token = secrets.token_urlsafe(32)
    with fresh_schema(services) as database_url, contextlib.ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
        env |= {"COREPLANE_DATABASE_URL": database_url, "COREPLANE_ADMIN_TOKEN": token,
                "COREPLANE_SERVER__CHANNEL_LAYER_URL": services.redis.url,
                "COREPLANE_SERVER__LIVE_TICK_S": NO_TICK_S}  # fmt: skip
        urls = []
        for name in ("a", "b"):
            port = free_port()
            proc = start_serve(env | {"COREPLANE_SERVER__PORT": str(port)}, tmp_path / f"{name}.log")
            stack.callback(lambda p=proc: (p.terminate(), p.wait(timeout=15)))
            urls.append(f"http://127.0.0.1:{port}")
        first, second = urls
        sockets = []
        for url in urls:  # an operator on each process: both bridges send
            viewer, _ = console_login(url, token=token)
            stack.callback(viewer.close)
            cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
            sockets.append(stack.enter_context(connect(url.replace("http", "ws") + "/ws/console?page=services",
                                                       additional_headers={"Cookie": cookie, "Origin": url})))  # fmt: skip
            assert 'id="catalog"' in sockets[-1].recv(timeout=10)
        ws = sockets[1]
        before = _renders(second, "services")
        # Two changes, each awaited on the socket: a group shared by both processes would
        # render the first change twice there before the second change is even made.
        for n in range(2):
            new = {"service": "shared", "kind": "redis", "address": f"10.7.7.{n}:6379", "status": "passing"}
            answer = httpx.post(f"{first}/api/v1/services/register", json=[new],
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert answer.status_code == 202, answer.text
            pushed_with(ws, f"10.7.7.{n}:6379", "the change from the other process")
        renders = _renders(second, "services") - before
        assert renders == 2, f"renders of two changes on the socket's process: {renders}"
