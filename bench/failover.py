"""Failover, coreplane against Redis Sentinel on the same private primary + 2 replicas:
seconds from `kill -9` of the primary to a promoted replica accepting writes (10 trials
each), and acknowledged writes lost with a plain writer and with `WAIT 1`.

Sentinel's `down-after-milliseconds` is coreplane's detection window: the agent probes
each Redis every second. Each coreplane trial starts a fresh control plane (PostgreSQL
store) and a real `coreplane agent` process; the writer uses coreplane's client helper."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench import failover_sentinel
from controlplane.redis_primary import PrimaryResolver, primary_redis
from controlplane.settings import Settings
from tests.support.agents import spawn_agent
from tests.support.redis_topology import Topology, redis_topology
from tests.support.results import Result
from tests.support.serve import running_control_plane
from tests.support.stores import fresh_schema

TRIALS = int(os.environ.get("BENCH_FAILOVER_TRIALS", 10))
WAIT_TRIALS = 3
DETECTION_S = 1.0


def _agent(base: str, token: str, topology: Topology, work: Path) -> subprocess.Popen:
    targets = [
        {"type": "redis", "name": "redis", "address": f"redis://127.0.0.1:{n.port}/0",
         "role": "primary" if n is topology.primary else "replica", "interval_s": DETECTION_S, "timeout_s": 0.5}
        for n in topology.nodes
    ]  # fmt: skip
    return spawn_agent(base, token, "failover-bench", targets, work)


def _ready(base: str, token: str) -> None:
    """Until the catalog shows the primary and both replicas passing."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/api/v1/services/redis", headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            instances = response.json()["instances"]
            if len(instances) == 3 and all(i["health"] == "passing" for i in instances):
                return
        time.sleep(0.1)
    raise RuntimeError("the catalog never showed three passing Redis instances")


def coreplane_trials(settings: Settings, trials: int, wait_trials: int) -> dict:
    times, lost_plain, lost_wait = [], [], []
    with redis_topology(replicas=2) as topology:
        for i in range(trials + wait_trials):
            if i:
                topology.reset()
            with (
                fresh_schema(settings) as url,
                running_control_plane(url) as (base, token),
                tempfile.TemporaryDirectory() as work,
            ):
                agent = _agent(base, token, topology, Path(work))
                resolver = None
                try:
                    _ready(base, token)
                    resolver = PrimaryResolver(base, token, "redis")
                    wait = i >= trials
                    seconds, lost = failover_sentinel.trial(
                        topology, primary_redis(resolver), wait_replica=wait, who="coreplane"
                    )
                finally:
                    if resolver is not None:
                        resolver.close()
                    agent.terminate()
                    agent.wait(timeout=30)
            if wait:
                lost_wait.append(lost)
            else:
                times.append(round(seconds, 3))
                lost_plain.append(lost)
            print(
                f"bench: failover trial {i + 1}: coreplane {seconds:.3f} s, {lost} write(s) lost", flush=True
            )
    return failover_sentinel.summary(times, lost_plain, lost_wait)


def run(settings: Settings) -> list[Result]:
    ours = coreplane_trials(settings, TRIALS, WAIT_TRIALS)
    theirs = failover_sentinel.sentinel_trials(
        TRIALS, down_after_ms=int(DETECTION_S * 1000), wait_trials=WAIT_TRIALS
    )
    print(f"bench: failover coreplane {ours}\nbench: failover Sentinel {theirs}", flush=True)
    unit = f"s from kill -9 to a writable replica, {TRIALS} trials, 1 s detection window"
    lost = (
        f"acknowledged writes lost, coreplane / Sentinel: plain {sum(ours['lost_plain'])} / "
        f"{sum(theirs['lost_plain'])} over {TRIALS} trials, WAIT 1 {sum(ours['lost_wait'])} / "
        f"{sum(theirs['lost_wait'])} over {WAIT_TRIALS}"
    )
    return [
        Result(
            name="failover_median_s", ours=ours["median_s"], baseline=theirs["median_s"],
            unit=f"median {unit}; {lost}", goal="coreplane median <= Sentinel median",
            met=ours["median_s"] <= theirs["median_s"],
        ),
        Result(
            name="failover_max_s", ours=ours["max_s"], baseline=theirs["max_s"], unit=f"max {unit}",
            goal="report", met=None,
        ),
    ]  # fmt: skip
