"""The agent's own footprint: resident memory and CPU while it watches every local
service at a 1 s interval for 5 minutes (BENCH_AGENT_SECONDS shortens it)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from dotenv import dotenv_values

from bench.harness import ROOT, fresh_schema, running_control_plane
from bench.results import Result
from controlplane.settings import Settings

SECONDS = int(os.environ.get("BENCH_AGENT_SECONDS", 300))
RSS_GOAL_MB, CPU_GOAL_PCT = 60.0, 2.0


def run(settings: Settings) -> list[Result]:
    with (
        fresh_schema(settings) as url,
        running_control_plane(url) as (base, token),
        tempfile.TemporaryDirectory() as work,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
        env |= {k: v for k, v in dotenv_values(ROOT / "var" / "services.env").items() if v is not None}
        env |= {
            "COREPLANE_ADMIN_TOKEN": token,
            "COREPLANE_AGENT__CONTROL_PLANE_URL": base,
            "COREPLANE_AGENT__NAME": "bench-agent",
            "COREPLANE_AGENT__PROBE_INTERVAL_S": "1",
            "COREPLANE_LOG_LEVEL": "warning",
            "MALLOC_ARENA_MAX": os.environ.get("BENCH_MALLOC_ARENA_MAX", "2"),
        }
        coreplane = str(Path(sys.executable).parent / "coreplane")
        agent = subprocess.Popen([coreplane, "agent"], env=env, cwd=work, stdout=subprocess.DEVNULL)

        proc = psutil.Process(agent.pid)
        try:
            time.sleep(15)  # registration, imports, first probes: not the steady state
            cpu_start, wall_start = sum(proc.cpu_times()[:2]), time.monotonic()
            rss = []
            while time.monotonic() - wall_start < SECONDS:
                rss.append(proc.memory_info().rss / 2**20)
                time.sleep(5)
                if agent.poll() is not None:
                    raise RuntimeError("the agent exited during the benchmark")
            cpu = (sum(proc.cpu_times()[:2]) - cpu_start) / (time.monotonic() - wall_start) * 100
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    targets = "every local service at 1 s"
    return [
        Result(
            name="agent_rss_mb", ours=round(max(rss), 1), baseline=None, unit=f"MB RSS, peak over {SECONDS} s ({targets})",
            goal=f"< {RSS_GOAL_MB:g} MB", met=max(rss) < RSS_GOAL_MB,
        ),
        Result(
            name="agent_cpu_pct", ours=round(cpu, 2), baseline=None, unit=f"% of one core over {SECONDS} s ({targets})",
            goal=f"< {CPU_GOAL_PCT:g} %", met=cpu < CPU_GOAL_PCT,
        ),
    ]  # fmt: skip
