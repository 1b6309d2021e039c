"""The control plane's own Prometheus metrics (names per Prometheus conventions).

Three kinds of figures, chosen so that each stays right with several processes:
- counted in this process (ingest, range-query durations): module-level metrics in
  prometheus-client's global registry; Prometheus sums them over the processes it scrapes;
- read from this process at scrape time (leader, console websockets, database pool):
  ``ProcessFigures``;
- read from the store at scrape time (actions by kind and state, policy evaluations by rule
  and outcome): ``StoreFigures``. Every process answers the same store-wide figure, whoever
  moved the action or led the round, across restarts and changes of leader; aggregate them
  with ``max``, not ``sum``.

The last two belong to one app (its engine, its leadership), so each app gets its own
registry (``app_registry``): a second ``create_app`` in one process registers nothing twice."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, select

from controlplane.store import counters
from controlplane.store.db import read_only
from controlplane.store.models import StorageBucket

log = logging.getLogger("coreplane.telemetry")

# Stored per agent heartbeat (infrastructure_metrics); the console lists agents by it.
HEARTBEAT_METRIC = "coreplane_agent_uptime_seconds"

INGEST_BATCHES = Counter(
    "coreplane_ingest_batches_total", "Ingest batches by outcome.", ["outcome"]
)  # accepted | duplicate | rejected
INGEST_POINTS = Counter("coreplane_ingest_points_total", "Items stored by ingest.", ["kind"])
INGEST_BYTES = Counter(
    "coreplane_ingest_received_bytes_total", "Request body bytes received by ingest (as sent)."
)
INGEST_REJECTS = Counter("coreplane_ingest_rejects_total", "Ingest batches refused, by reason.", ["reason"])
INGEST_DUPLICATES = Counter("coreplane_ingest_duplicates_total", "Batches whose batch_id was already stored.")
INGEST_SECONDS = Histogram(
    "coreplane_ingest_duration_seconds",
    "Time to handle one ingest request, body read to commit.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
METRICS_QUERY_SECONDS = Histogram(
    "coreplane_metrics_query_duration_seconds",
    "Time the store took to answer one GET /api/v1/metrics range query, by source (raw, 1m, 1h).",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LIVE_RENDER_SECONDS = Histogram(
    "coreplane_console_live_render_seconds",
    "Time to render one live console page's blocks, by page. One render serves every socket "
    "showing the same page, parameters and role.",
    ["page"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# /metrics is unauthenticated: several scrapers (or anyone) must not turn it into a stream
# of store queries, so the store's figures are read at most this often per process.
STORE_FIGURES_TTL_S = 5.0

# store_counters family -> the /metrics counter it is served as
STORE_COUNTERS = (
    (counters.ACTIONS, "coreplane_actions", "Actions that entered each state (audit trail), by kind.",
     ["kind", "state"]),
    (counters.EVALUATIONS, "coreplane_policy_evaluations",
     "Rule evaluations the policy engine recorded (fired, suppressed, dry_run, error).", ["rule", "outcome"]),
)  # fmt: skip


class ProcessFigures(Collector):
    """This process as it is at scrape time."""

    def __init__(self, engine: Engine, leads: Callable[[], bool], websockets: Callable[[], int]) -> None:
        self.engine, self.leads, self.websockets = engine, leads, websockets

    def collect(self) -> Iterator[GaugeMetricFamily]:
        leads = 1.0 if self.leads() else 0.0
        yield _gauge("coreplane_leader", "1 when this process leads (runs rules and plans), else 0.", leads)
        yield _gauge("coreplane_console_websockets", "Console websockets open here.", self.websockets())
        pool = self.engine.pool
        if hasattr(pool, "checkedout") and hasattr(pool, "size"):  # QueuePool, both dialects
            in_use = "Store connections in use (up to the pool size plus its overflow)."
            yield _gauge("coreplane_db_pool_checked_out", in_use, pool.checkedout())
            yield _gauge("coreplane_db_pool_size", "Store connections the pool keeps open.", pool.size())


class StoreFigures(Collector):
    """Store-wide counters, read from store_counters (bumped with each audit row and
    evaluation, so they stay monotonic when retention prunes the history)."""

    def __init__(self, engine: Engine, ttl_s: float = STORE_FIGURES_TTL_S) -> None:
        self.engine, self.ttl_s = engine, ttl_s
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._rows: dict[str, list] | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        rows = self._cached()
        if rows is None:
            return
        for family_key, name, documentation, labels in STORE_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=labels)
            for first, second, count in rows[family_key]:
                family.add_metric([first, second], count)
            yield family
        yield from _storage_gauges(rows[STORAGE_BUCKETS])

    def _cached(self) -> dict[str, list] | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl_s:
                try:
                    self._rows = self._read()
                except Exception as exc:  # noqa: BLE001 - /metrics answers without them; /readyz says why
                    log.warning("store figures unavailable: %s: %s", type(exc).__name__, exc)
                    self._rows = None
                self._read_at = time.monotonic()
            return self._rows

    def _read(self) -> dict[str, list]:
        with self.engine.connect() as conn:
            conn = read_only(conn)  # a scrape never queues behind a writer (store/db.py)
            found = {family: counters.read(conn, family) for family, *_ in STORE_COUNTERS}
            found[STORAGE_BUCKETS] = storage_usage(conn)
            return found


# Storage's buckets as its usage round last counted them (controlplane/storage/analytics.py),
# for the quota alerts (alerts/rules/storage.yml): the same on every process, hence max.
STORAGE_BUCKETS = "storage_buckets"
MAX_STORAGE_BUCKETS = 1000


def storage_usage(conn: Connection) -> list:
    """(name, used_bytes, objects, quota_bytes) of the first MAX_STORAGE_BUCKETS buckets."""
    b = StorageBucket
    query = select(b.name, b.used_bytes, b.objects, b.quota_bytes).order_by(b.name).limit(MAX_STORAGE_BUCKETS)
    return list(conn.execute(query))


def _storage_gauges(rows: list) -> Iterator[GaugeMetricFamily]:
    used = GaugeMetricFamily(
        "coreplane_storage_bucket_used_bytes",
        "Bytes in each managed bucket at its last count.",
        labels=["bucket"],
    )
    objects = GaugeMetricFamily(
        "coreplane_storage_bucket_objects",
        "Objects in each managed bucket at its last count.",
        labels=["bucket"],
    )
    quota = GaugeMetricFamily(
        "coreplane_storage_bucket_quota_bytes",
        "Each managed bucket's quota (buckets with one).",
        labels=["bucket"],
    )
    for name, used_bytes, count, quota_bytes in rows:
        used.add_metric([name], used_bytes)
        objects.add_metric([name], count)
        if quota_bytes is not None:
            quota.add_metric([name], quota_bytes)
    yield from (used, objects, quota)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def app_registry(
    engine: Engine, *, leads: Callable[[], bool], websockets: Callable[[], int]
) -> CollectorRegistry:
    """The figures of one app: its process's state and its store's counters."""
    registry = CollectorRegistry()
    registry.register(ProcessFigures(engine, leads, websockets))
    registry.register(StoreFigures(engine))
    return registry


def exposition(app_figures: CollectorRegistry) -> bytes:
    """The text /metrics serves: this process's counters, then the app's figures."""
    return generate_latest(REGISTRY) + generate_latest(app_figures)
