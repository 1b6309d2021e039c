"""The metrics explorer against a real `coreplane serve` fed by a real agent watching the
real Redis: the URL holds the query (a GET of the same URL, or of the page's share link,
shows the same chart, the same figures GET /api/v1/metrics gives); the overview's tile
links work; a bad query is a 422 page that says what to change; a viewer can use it."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import httpx

from agents.config import TargetConfig
from agents.runtime import instance_of
from controlplane.clock import utcnow
from tests.support.agents import running_agent
from tests.support.console import console_users, page_with
from tests.support.services import require
from tests.support.timing import until


def _chart(page: str) -> dict:
    found = re.findall(r"data-chart='([^']*)'", page)
    assert len(found) == 1, "the explorer draws one chart"
    return json.loads(found[0])


def _probes(url: str, token: str) -> int:
    """How many connected-clients points of the service kv the store holds (the last hour)."""
    params = {
        "metric_type": "coreplane_redis_connected_clients",
        "service_name": "kv",
        "agg": "count",
        "step": 3600,
    }
    answer = httpx.get(f"{url}/api/v1/metrics", params=params, headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return int(sum(v or 0 for series in answer.json()["series"] for _, v in series["points"]))


def test_the_url_holds_the_query_and_bad_queries_say_why(control_plane_sqlite, services, tmp_path):
    require(services.redis.url, "redis")
    url, token, _log = control_plane_sqlite
    viewer = console_users(url, token, vera="viewer")["vera"]
    address = instance_of(services.redis.url)
    started = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    kv = TargetConfig(type="redis", name="kv", address=services.redis.url, role="primary", interval_s=1)
    with running_agent(url, token, tmp_path, kv, name="explore-agent"):
        option = '<option value="coreplane_redis_connected_clients"'
        page = page_with(viewer, "/explore", option, "the explorer to offer the agent's metrics")
        until("three probes of the Redis in the store", lambda: _probes(url, token) >= 3)
    # The agent has stopped (and flushed): the figures in a closed window cannot change.
    ended = utcnow().replace(microsecond=0) + timedelta(minutes=1)
    assert "choose a metric" in page
    query = {"metric": "coreplane_redis_connected_clients", "agg": "max", "service": "kv",
             "tags": f"instance={address}", "start": started.isoformat(), "end": ended.isoformat(),
             "step": "15", "group_by": "instance"}  # fmt: skip
    first = viewer.get("/explore", params=query)
    assert first.status_code == 200, first.text
    chart = _chart(first.text)
    assert chart["series"] and chart["series"][0]["label"] == f"kv · {address}"
    assert any(v is not None for v in chart["series"][0]["values"])
    # The form holds the query, so submitting it again asks the same thing.
    assert '<option value="coreplane_redis_connected_clients" selected>' in first.text
    assert f'value="instance={address}"' in first.text and 'value="instance"' in first.text
    assert "<option selected>max</option>" in first.text
    again = viewer.get(str(first.url))
    assert _chart(again.text) == chart
    share = html.unescape(re.search(r'id="share" href="([^"]+)"', first.text).group(1))
    assert _chart(viewer.get(share).text) == chart
    # The same figures as the API's for the same query.
    api = html.unescape(re.search(r'id="api" href="([^"]+)"', first.text).group(1))
    answer = httpx.get(url + api, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    points = [v for _, v in answer.json()["series"][0]["points"]]
    assert [v for v in chart["series"][0]["values"] if v is not None] == [v for v in points if v is not None]
    rows = re.findall(r'<tr data-series="([^"]+)">', first.text)
    assert rows == [f"kv · {address}"]

    # What the overview's tiles link to: a relative range, every service.
    tile = viewer.get("/explore", params={"metric": "coreplane_redis_ops_per_second", "agg": "avg"})
    assert tile.status_code == 200 and _chart(tile.text)["series"][0]["label"] == "kv"

    bad = {
        "agg": ({"agg": "median"}, "unknown aggregation &#39;median&#39;"),
        "order": ({"start": ended.isoformat(), "end": started.isoformat()}, "start must be before end"),
        "buckets": ({"range": "7d", "step": "1", "start": "", "end": ""}, "buckets per series, over 11000"),
        "tags": ({"tags": "instance"}, "tag filter &#39;instance&#39; must look like key=value"),
        "time": ({"start": "yesterday"}, "start &#39;yesterday&#39; is not a time"),
        "range": ({"range": "1y", "start": "", "end": ""}, "unknown range &#39;1y&#39;"),
    }
    for case, (change, reason) in bad.items():
        refused = viewer.get("/explore", params=query | change)
        assert refused.status_code == 422, case
        assert reason in refused.text, (case, re.search(r'id="query-error">(.*?)</p>', refused.text))
        assert "data-chart" not in refused.text
    assert httpx.get(f"{url}/explore").status_code == 303  # no session: the login page
    viewer.close()
