"""The realtime collector against a real `coreplane serve` on the Redis channel layer: the
first scrape gives the gauges and no rate; after a client subscribed and messages went
through /ws/rt, the second gives connections, per-second rates in total and per room kind,
delivery quantiles and the fan-out; a real agent stores them under the target's name; a
serve that is down makes collect() raise."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.collectors.realtime import RealtimeCollector, quantile
from agents.config import TargetConfig
from agents.http import HTTPError
from tests.support.agents import running_agent
from tests.support.processes import free_port
from tests.support.realtime import Client, mint, room, rt_serve, ws_url
from tests.support.timing import until

MESSAGES = 30
SCENARIO_S = 60.0
RATES = ("coreplane_rt_connections_opened_per_second", "coreplane_rt_connections_closed_per_second",
         "coreplane_rt_messages_in_per_second", "coreplane_rt_messages_out_per_second",
         "coreplane_rt_frames_dropped_per_second", "coreplane_rt_frames_refused_per_second")  # fmt: skip
QUANTILES = ("coreplane_rt_delivery_p50_seconds", "coreplane_rt_delivery_p95_seconds",
             "coreplane_rt_delivery_p99_seconds")  # fmt: skip


def target(address: str, timeout_s: float = 5) -> TargetConfig:
    return TargetConfig(type="realtime", name="realtime", address=address, timeout_s=timeout_s)


def figures(obs, name: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """``name``'s values by their kind tag ("" for the total, which carries none)."""
    return {t.get("kind", ""): v for n, v, t in obs.metrics if n == name}


def serving(cp) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The serve's realtime samples now, by name (summed over labels)."""
    text = httpx.get(f"{cp.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def settled(cp) -> bool:  # type: ignore[no-untyped-def]
    """Every delivery counted, and the hub's maintenance (every heartbeat/4) has counted the
    room and its member."""
    now = serving(cp)
    return (now.get("coreplane_rt_delivery_seconds_count", 0) >= MESSAGES
            and now.get("coreplane_rt_rooms", 0) >= 1 and now.get("coreplane_rt_presence", 0) >= 1)  # fmt: skip


async def exchange(cp, name: str) -> Client:  # type: ignore[no-untyped-def]
    """A member of ``name`` that publishes MESSAGES and reads them all back; left open."""
    client = await Client.open(ws_url(cp, mint(cp, "ann", [name])))
    joined = await client.call("subscribe", name)
    assert joined["type"] == "subscribed", joined
    for i in range(MESSAGES):
        sent = await client.call("publish", name, data={"n": i})
        assert sent["type"] == "published", sent
    got = await client.messages(name, MESSAGES)
    assert [m["data"]["n"] for m in got] == list(range(MESSAGES))
    return client


def test_two_scrapes_around_traffic_give_rates_quantiles_and_kinds():
    name = room("collect")
    kind = name.split(":", 1)[0] + ":*"  # controlplane/realtime/metrics.py's room kind
    with rt_serve() as cp:
        collector = RealtimeCollector(target(cp.url))
        try:
            first = collector.collect()
            assert figures(first, "coreplane_rt_connections") == {"": 0.0}
            assert not [n for n, _, _ in first.metrics if n in RATES or n in QUANTILES], first.metrics

            async def scenario() -> None:
                client = await exchange(cp, name)
                until("the serve to count the deliveries, the room and its member", lambda: settled(cp),
                      timeout_s=10, every_s=0.1)  # fmt: skip
                second = collector.collect()
                await client.close()
                check_second(second, kind)

            asyncio.run(asyncio.wait_for(scenario(), SCENARIO_S))
        finally:
            collector.close()


def check_second(obs, kind: str) -> None:  # type: ignore[no-untyped-def]
    assert figures(obs, "coreplane_rt_connections")[""] >= 1
    assert figures(obs, "coreplane_rt_rooms")[""] >= 1
    assert figures(obs, "coreplane_rt_presence")[""] >= 1
    for name in RATES:
        assert "" in figures(obs, name), f"{name} missing: {obs.metrics}"
    assert figures(obs, "coreplane_rt_connections_opened_per_second")[""] > 0
    out = figures(obs, "coreplane_rt_messages_out_per_second")
    into = figures(obs, "coreplane_rt_messages_in_per_second")
    assert out[""] > 0 and into[""] > 0
    assert out[kind] > 0 and into[kind] > 0, (kind, out, into)
    assert figures(obs, "coreplane_rt_frames_dropped_per_second")[""] == 0
    p50, p95, p99 = (figures(obs, name)[""] for name in QUANTILES)
    assert 0 < p50 <= p95 <= p99 < 60, (p50, p95, p99)
    assert figures(obs, "coreplane_rt_fanout_mean")[""] >= 1
    assert obs.status == "passing" and "connection" in obs.message


def stored(cp, metric: str, **tags: str) -> float:  # type: ignore[no-untyped-def]
    """The largest value of ``metric`` the store holds for service realtime (0 when none)."""
    answer = httpx.get(
        f"{cp.url}/api/v1/metrics",
        params={"metric_type": metric, "service_name": "realtime", "agg": "max",
                "tags": [f"{k}={v}" for k, v in tags.items()]},
        headers={"Authorization": f"Bearer {cp.token}"}, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    values = [v for s in answer.json()["series"] for _, v in s["points"] if v is not None]
    return max(values, default=0.0)


def test_an_agent_stores_the_figures_under_the_target_name(tmp_path):
    name = room("stored")
    kind = name.split(":", 1)[0] + ":*"
    with rt_serve() as cp:
        watch = target(cp.url).model_copy(update={"interval_s": 0.5})
        with running_agent(cp.url, cp.token, tmp_path, watch, name="rt-agent"):

            async def scenario() -> None:
                client = await exchange(cp, name)
                try:
                    until("the stored out rate of the room's kind and delivery p99",
                          lambda: stored(cp, "coreplane_rt_messages_out_per_second", kind=kind) > 0
                          and stored(cp, "coreplane_rt_delivery_p99_seconds") > 0,
                          timeout_s=30, every_s=0.5)  # fmt: skip
                finally:
                    await client.close()

            asyncio.run(asyncio.wait_for(scenario(), SCENARIO_S))
        assert stored(cp, "coreplane_rt_connections") >= 1


def test_a_serve_that_is_down_makes_collect_raise():
    port = free_port()
    collector = RealtimeCollector(target(f"http://127.0.0.1:{port}", timeout_s=2))
    try:
        with pytest.raises(HTTPError) as raised:
            collector.collect()
    finally:
        collector.close()
    assert str(port) in str(raised.value) and "refused" in str(raised.value).lower(), raised.value


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile():
    # 10 deliveries in (1 ms, 2.5 ms], 10 in (2.5 ms, 5 ms]: the median is the first bucket's
    # top, p95 lies 90 % into the second bucket.
    buckets = [(0.001, 0.0), (0.0025, 10.0), (0.005, 20.0), (math.inf, 20.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.0025)
    assert quantile(0.95, buckets) == pytest.approx(0.0025 + 0.0025 * 0.9)
    assert quantile(0.25, buckets) == pytest.approx(0.001 + 0.0015 * 0.5)
    # Beyond the largest finite bound, that bound is the answer; nothing delivered, none.
    assert quantile(0.99, [(0.005, 1.0), (math.inf, 10.0)]) == 0.005
    assert quantile(0.5, [(0.005, 0.0), (math.inf, 0.0)]) is None
