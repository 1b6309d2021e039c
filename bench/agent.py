"""The agent's footprint, side by side with what it replaces: `coreplane agent` watching
every local service at a 1 s interval, and the Debian Prometheus exporters that cover the
backends they can (one redis exporter per Redis, postgres, elasticsearch, node), on
loopback ports and scraped every second, as a Prometheus at that interval would.

Both run at once, against the same backends, and are measured over the same window
(BENCH_AGENT_SECONDS, 60 s: 60 probe rounds and 60 scrapes) after the same warm-up:
each process's RSS is sampled every second (its peak is reported), its CPU time read at
the window's ends. The exporters come from scripts/bench-exporters.sh, which `make bench`
runs. What the exporters' side costs beyond them (Prometheus itself) is not counted, nor
is the control plane on the agent's side."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import psutil
import sqlalchemy as sa

from controlplane.settings import Settings
from tests.support.processes import coreplane_bin, coreplane_env, free_port, spawn, stop, wait_ready
from tests.support.results import Result
from tests.support.serve import running_control_plane
from tests.support.stores import fresh_schema

SECONDS = int(os.environ.get("BENCH_AGENT_SECONDS", 60))
WARMUP_S = 15  # registration, imports, first probes and scrapes: not the steady state
INTERVAL_S = 1.0  # the agent's probe interval, and the exporters' scrape interval
RATIO_GOAL, CPU_GOAL_PCT = 0.75, 2.0
# What the agent watches that no exporter here covers (both sides watch Redis, PostgreSQL,
# Elasticsearch and the host).
AGENT_ONLY = "RabbitMQ, Memcached, S3, HAProxy, Celery and Channels"


@dataclass
class Sampled:
    """A process under measurement: its peak RSS and its CPU time over the window."""

    name: str
    process: psutil.Process
    log: Path
    url: str | None = None  # an exporter's /metrics, scraped every tick
    rss_mb: list[float] = field(default_factory=list)
    cpu_start_s: float = 0.0
    cpu_s: float = 0.0

    def cpu_time(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def sample(self) -> None:
        self.rss_mb.append(self.process.memory_info().rss / 2**20)

    @property
    def peak_mb(self) -> float:
        return max(self.rss_mb)


def exporter_commands(settings: Settings) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, argv, extra environment) of each exporter covering a configured backend; the
    listen address is added by the caller."""
    commands = [
        (f"redis-exporter :{urlsplit(url).port}", ["/usr/bin/prometheus-redis-exporter", f"--redis.addr={url}"], {})
        for url in ([settings.redis.url, *settings.redis.replica_urls] if settings.redis.url else [])
    ]  # fmt: skip
    if settings.postgres.url:
        dsn = sa.make_url(settings.postgres.url).set(drivername="postgresql")
        dsn = dsn.update_query_dict({"sslmode": "disable"}).render_as_string(hide_password=False)
        commands.append(
            ("postgres-exporter", ["/usr/bin/prometheus-postgres-exporter"], {"DATA_SOURCE_NAME": dsn})
        )
    if settings.elasticsearch.url:
        es, parts = settings.elasticsearch, urlsplit(settings.elasticsearch.url)
        # This exporter version takes credentials only in the URI (argv, on a loopback bench).
        auth = f"{quote(es.username, safe='')}:{quote(es.password or '', safe='')}@" if es.username else ""
        uri = parts._replace(netloc=auth + parts.netloc).geturl()
        commands.append(
            ("elasticsearch-exporter", ["/usr/bin/prometheus-elasticsearch-exporter", f"--es.uri={uri}"], {})
        )
    commands.append(("node-exporter", ["/usr/bin/prometheus-node-exporter"], {}))
    return commands


@contextmanager
def running_exporters(settings: Settings, work: Path) -> Iterator[list[Sampled]]:
    """Every exporter of exporter_commands, each on its own loopback port, answering."""
    started: list[tuple[Sampled, subprocess.Popen]] = []
    try:
        for name, argv, extra in exporter_commands(settings):
            if not Path(argv[0]).exists():
                raise SystemExit(f"{argv[0]} is missing: run scripts/bench-exporters.sh (make bench does)")
            port, log = free_port(), work / f"{name.split()[0]}-{len(started)}.log"
            process = spawn([*argv, f"--web.listen-address=127.0.0.1:{port}"], log, os.environ | extra)
            url = f"http://127.0.0.1:{port}/metrics"
            started.append((Sampled(name, psutil.Process(process.pid), log, url), process))
            wait_ready(url, process, log)
        yield [sampled for sampled, _ in started]
    finally:
        for _, process in started:
            stop(process)


@contextmanager
def running_agent(settings: Settings, work: Path) -> Iterator[Sampled]:
    """`coreplane agent` without agent.yaml (every backend in var/services.env) at 1 s,
    reporting to a control plane on a fresh schema."""
    with fresh_schema(settings) as url, running_control_plane(url) as (base, token):
        env = coreplane_env(
            with_services=True, admin_token=token, agent__control_plane_url=base, agent__name="bench-agent",
            agent__probe_interval_s=f"{INTERVAL_S:g}", log_level="warning", var=str(work),
        )  # fmt: skip
        log = work / "agent.log"
        agent = spawn([coreplane_bin(), "agent"], log, env)
        try:
            yield Sampled("agent", psutil.Process(agent.pid), log)
        finally:
            stop(agent)


def tick(processes: list[Sampled], client: httpx.Client, rounds: int, sample: bool) -> float:
    """``rounds`` ticks of INTERVAL_S: scrape every exporter (the whole body, as Prometheus
    does), then sample every process. Returns the seconds it took."""
    started = time.monotonic()
    for n in range(1, rounds + 1):
        for p in processes:
            if p.process.status() == psutil.STATUS_ZOMBIE or not p.process.is_running():
                raise RuntimeError(
                    f"{p.name} exited during the benchmark:\n{p.log.read_text(errors='replace')[-3000:]}"
                )
            if p.url:
                client.get(p.url).raise_for_status()
            if sample:
                p.sample()
        time.sleep(max(0.0, started + n * INTERVAL_S - time.monotonic()))
    return time.monotonic() - started


def measure(processes: list[Sampled]) -> float:
    """Warm up, then one window: every process's peak RSS and CPU seconds. Returns its length."""
    with httpx.Client(timeout=10) as client:
        tick(processes, client, WARMUP_S, sample=False)
        for p in processes:
            p.cpu_start_s = p.cpu_time()
        window_s = tick(processes, client, SECONDS, sample=True)
        for p in processes:
            p.cpu_s = p.cpu_time() - p.cpu_start_s
    return window_s


def run(settings: Settings) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="coreplane-footprint-") as scratch, ExitStack() as stack:
        work = Path(scratch)
        exporters = stack.enter_context(running_exporters(settings, work))
        agent = stack.enter_context(running_agent(settings, work))
        window_s = measure([agent, *exporters])
    return results(agent, exporters, window_s)


def results(agent: Sampled, exporters: list[Sampled], window_s: float) -> list[Result]:
    rss = sum(e.peak_mb for e in exporters)
    cpu = sum(e.cpu_s for e in exporters)
    each_mb = ", ".join(f"{e.name} {e.peak_mb:.1f}" for e in exporters)
    each_cpu = ", ".join(f"{e.name} {e.cpu_s:.2f}" for e in exporters)
    side = (
        f"over {SECONDS} s (probes and scrapes every {INTERVAL_S:g} s): the agent watching every local "
        f"service vs the sum of {len(exporters)} Debian exporters"
    )
    also = f"the agent also watches {AGENT_ONLY}, which they don't"
    agent_pct = agent.cpu_s / window_s * 100
    return [
        Result(
            name="agent_rss_vs_exporters", ours=round(agent.peak_mb, 1), baseline=round(rss, 1),
            unit=f"MB RSS, peak {side} ({each_mb}); {also}",
            goal=f"ratio <= {RATIO_GOAL:g}", met=agent.peak_mb / rss <= RATIO_GOAL,
        ),
        Result(
            name="agent_cpu_vs_exporters", ours=round(agent.cpu_s, 2), baseline=round(cpu, 2),
            unit=f"CPU s {side} ({each_cpu}); {also}", goal="report", met=None,
        ),
        Result(
            name="agent_rss_mb", ours=round(agent.peak_mb, 1), baseline=None,
            unit=f"MB RSS, peak over {SECONDS} s (every local service at {INTERVAL_S:g} s)", goal="report", met=None,
        ),
        Result(
            name="agent_cpu_pct", ours=round(agent_pct, 2), baseline=None,
            unit=f"% of one core over {SECONDS} s (every local service at {INTERVAL_S:g} s)",
            goal=f"< {CPU_GOAL_PCT:g} %", met=agent_pct < CPU_GOAL_PCT,
        ),
    ]  # fmt: skip
