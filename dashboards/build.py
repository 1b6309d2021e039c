"""Writes the Grafana dashboards in dashboards/json/ (run: python dashboards/build.py, or
python -m dashboards.build).

The dashboards are built with grafana-foundation-sdk, Grafana Labs' typed builders for the
dashboard schema (the release for Grafana 11.6, schemaVersion 41), so a field Grafana does
not know fails here rather than in Grafana. The JSON is generated so that every dashboard has
the same variables, data sources and layout, and committed so that Grafana's file
provisioning and `coreplane dashboards push` read it as it is; a test checks that the
committed JSON is what this script writes.

Prometheus panels read the figures agents report, re-exposed by the control plane's
/metrics/backends (labels `service` and `instance` are the catalog's), and the control
plane's own /metrics. Postgres panels (data source ``coreplane-store``) read the store's
public tables (infrastructure_metrics, infrastructure_events, infrastructure_settings), and
the tasks dashboard the task history (task_runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as grafana
from grafana_foundation_sdk.builders import table as tables
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    GridPos,
    VariableModel,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT = Path(__file__).resolve().parent / "json"
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
STORE = DataSourceRef(type_val="grafana-postgresql-datasource", uid="coreplane-store")
TAG = "coreplane"
GRID_WIDTH = 24

# The filter every backend panel carries: the dashboard's service and instance variables.
SI = 'service=~"$service", instance=~"$instance"'

AnyPanel = timeseries.Panel | stat.Panel | tables.Panel


# --- the store's SQL queries ------------------------------------------------------------
# The SDK has no builder for Grafana's PostgreSQL data source: this is the query as its
# editor saves it in code mode, as a Dataquery variant the SDK's panels accept.


class StoreQuery(cogvariants.Dataquery):
    def __init__(self, raw_sql: str, *, table: bool) -> None:
        self.raw_sql = raw_sql
        self.format = "table" if table else "time_series"

    def to_json(self) -> dict[str, object]:
        return {"refId": "A", "datasource": STORE.to_json(), "rawQuery": True, "editorMode": "code",
                "format": self.format, "rawSql": self.raw_sql}  # fmt: skip


class Sql(cogbuilder.Builder[StoreQuery]):
    def __init__(self, query: str, *, table: bool) -> None:
        # On one line, as Grafana's editor shows it and the committed JSON stays readable.
        self._query = StoreQuery(" ".join(query.split()), table=table)

    def build(self) -> StoreQuery:
        return self._query


# --- panels -----------------------------------------------------------------------------
# fmt: off


def prom(title: str, *queries: tuple[str, str], unit: str = "short", kind: str = "timeseries",
         width: int = 12, description: str = "") -> AnyPanel:
    """A Prometheus panel; each query is (expression, legend)."""
    panel = _panel(stat.Panel() if kind == "stat" else timeseries.Panel(), title, PROMETHEUS, unit,
                   width, description)
    for i, (expr, legend) in enumerate(queries):
        panel.with_target(prometheus.Dataquery().ref_id(chr(65 + i)).datasource(PROMETHEUS).expr(expr)
                          .legend_format(legend))
    if kind == "stat":
        panel.height(4).reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        panel.color_mode(BigValueColorMode.VALUE)
    return panel


def sql(title: str, query: str, *, table: bool = False, unit: str = "short", width: int = 12,
        description: str = "") -> AnyPanel:
    """A Postgres panel over the store's public tables: a time series (columns time, metric,
    value) or, with ``table``, a table."""
    panel = _panel(tables.Panel() if table else timeseries.Panel(), title, STORE, unit, width, description)
    return panel.with_target(Sql(query, table=table))


def _panel(panel: AnyPanel, title: str, datasource: DataSourceRef, unit: str, width: int,
           description: str) -> AnyPanel:
    panel.title(title).datasource(datasource).unit(unit).span(width).height(8)
    return panel.description(description) if description else panel


def health_panels(kinds: str) -> list[AnyPanel]:
    """What every backend dashboard starts with: catalog health and probe time."""
    return [
        prom("Health (1 passing, 0.5 warning, 0 critical)",
             (f'coreplane_instance_health{{{SI}, kind=~"{kinds}"}}', "{{service}} {{instance}} {{role}}"),
             description="The catalog's health of each instance, from its agent's probes."),
        prom("Probe duration", (
            'coreplane_agent_probe_duration_seconds{target=~"$service", instance=~"$instance"}',
            "{{target}} {{instance}}"), unit="s",
            description="How long the agent's last probe of each instance took."),
    ]


def store_series(metric: str, label: str, unit: str = "short") -> AnyPanel:
    """A reported series as the store holds it, averaged per minute."""
    # Grafana's SQL text, built from this file's own metric names: no input reaches it.
    return sql(f"{label} (store)", f"""
        SELECT $__timeGroupAlias(timestamp, '1m'), service_name || ' ' || (tags->>'instance') AS metric,
               avg(value) AS value
        FROM infrastructure_metrics
        WHERE $__timeFilter(timestamp) AND metric_type = '{metric}' AND service_name IN ($service)
        GROUP BY 1, 2 ORDER BY 1""", unit=unit,  # noqa: S608
        description=f"{metric} as stored in infrastructure_metrics, averaged per minute.")


def events_table() -> AnyPanel:
    """The services' latest events: health and role transitions, alerts, actions' traces."""
    return sql("Events", """
        SELECT timestamp AS time, event_type, service_name, status, details->>'instance' AS instance,
               details->>'message' AS message
        FROM infrastructure_events
        WHERE $__timeFilter(timestamp) AND service_name IN ($service)
        ORDER BY timestamp DESC LIMIT 200""", table=True, width=24,
        description="The latest events of the selected services, newest first.")


def store_panels(metric: str, label: str, unit: str = "short") -> list[AnyPanel]:
    """The service seen from the store: one reported series and the service's events."""
    return [store_series(metric, label, unit), events_table()]


# --- variables and dashboards -----------------------------------------------------------


def variable(name: str, query: str) -> cogbuilder.Builder[VariableModel]:
    """A Prometheus query variable (label_values), several values at once, All by default."""
    return (grafana.QueryVariable(name).label(name.capitalize()).datasource(PROMETHEUS).query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True)
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
            .sort(VariableSort.ALPHABETICAL_ASC))


def service_variables(selector: str) -> list[cogbuilder.Builder[VariableModel]]:
    """``service`` and ``instance`` taken from the series ``selector`` matches (a metric name
    or a ``{...}`` selector)."""
    if selector.endswith("}"):
        of_service = selector[:-1] + ', service=~"$service"}'
    else:
        of_service = selector + '{service=~"$service"}'
    return [
        variable("service", f"label_values({selector}, service)"),
        variable("instance", f"label_values({of_service}, instance)"),
    ]


def place(panels: list[AnyPanel]) -> None:
    """Number the panels and lay them out left to right, a panel that does not fit the row's
    remaining width starting the next row. (The SDK's own placement lets such a panel run
    past the grid's right edge.)"""
    x = y = row_h = 0
    for number, panel in enumerate(panels, start=1):
        size = panel.build().grid_pos
        if x + size.w > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        panel.id(number).grid_pos(GridPos(x=x, y=y, w=size.w, h=size.h))
        x, row_h = x + size.w, max(row_h, size.h)


def dashboard(uid: str, title: str, description: str, variables: list[cogbuilder.Builder[VariableModel]],
              panels: list[AnyPanel]) -> grafana.Dashboard:
    board = (grafana.Dashboard(title).uid(uid).description(description).tags([TAG]).timezone("utc")
             .editable().version(1).refresh("30s").time("now-6h", "now")
             .link(grafana.DashboardLink("coreplane").type(DashboardLinkType.DASHBOARDS).tags([TAG])
                   .as_dropdown(True))
             .variables(variables))
    place(panels)
    for panel in panels:
        board.with_panel(panel)
    return board


def overview() -> grafana.Dashboard:
    health = f"coreplane_instance_health{{{SI}}}"
    return dashboard("coreplane-overview", "coreplane / Overview",
        "Every service's health, the agents, the control plane and the latest events.",
        service_variables("coreplane_instance_health"), [
        prom("Instances passing", (f"sum({health} == bool 1)", "passing"), kind="stat", width=6),
        prom("Instances not passing", (f"sum({health} < bool 1)", "warning or critical"), kind="stat",
             width=6),
        prom("Firing alerts", ('count(ALERTS{alertstate="firing"}) or vector(0)', "firing"), kind="stat",
             width=6, description="Alerts Prometheus fires from alerts/rules (0 when none)."),
        prom("Control plane processes up", ('sum(up{job="coreplane"})', "up"), kind="stat", width=6),
        prom("Health by instance", (health, "{{service}} {{instance}} {{role}}"), width=24,
             description="1 passing, 0.5 warning, 0 critical, as the catalog says."),
        prom("Seconds since each agent was last heard",
             ("time() - coreplane_agent_last_seen_timestamp_seconds", "{{agent}}"), unit="s"),
        prom("Points ingested per second", ("sum by (kind) (rate(coreplane_ingest_points_total[5m]))",
                                            "{{kind}}"), unit="ops"),
        sql("Events per type", """
            SELECT $__timeGroupAlias(timestamp, '5m'), event_type AS metric, count(*) AS value
            FROM infrastructure_events
            WHERE $__timeFilter(timestamp) AND service_name IN ($service)
            GROUP BY 1, 2 ORDER BY 1"""),
        sql("Points stored per service", """
            SELECT $__timeGroupAlias(timestamp, '5m'), service_name AS metric, count(*) AS value
            FROM infrastructure_metrics
            WHERE $__timeFilter(timestamp) AND service_name IN ($service)
            GROUP BY 1, 2 ORDER BY 1"""),
        events_table(),
    ])


def control_plane() -> grafana.Dashboard:
    i = 'instance=~"$instance"'
    return dashboard("coreplane-control-plane", "coreplane / Control plane",
        "The control plane's own /metrics: ingest, range queries, actions, policy, leader, "
        "websockets, database pool; and what the store holds.",
        [variable("service", "label_values(coreplane_instance_health, service)"),
         variable("instance", 'label_values(up{job="coreplane"}, instance)')], [
        prom("Leader", (f"coreplane_leader{{{i}}}", "{{instance}}"), kind="stat", width=6,
             description="1 on the process that runs the rules and the plans."),
        prom("Console websockets", (f"sum(coreplane_console_websockets{{{i}}})", "open"), kind="stat",
             width=6),
        prom("Store connections in use", (f"sum(coreplane_db_pool_checked_out{{{i}}})", "in use"),
             kind="stat", width=6),
        prom("Scrapes up", (f'up{{job=~"coreplane|coreplane-backends", {i}}}', "{{job}} {{instance}}"),
             kind="stat", width=6),
        prom("Ingest batches per second", (
            f"sum by (outcome) (rate(coreplane_ingest_batches_total{{{i}}}[5m]))", "{{outcome}}"),
            unit="ops"),
        prom("Ingest time (p50, p95)", *[(
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(coreplane_ingest_duration_seconds_bucket{{{i}}}[5m])))",
            f"p{round(q * 100)}") for q in (0.5, 0.95)], unit="s"),
        prom("Items ingested per second", (
            f"sum by (kind) (rate(coreplane_ingest_points_total{{{i}}}[5m]))", "{{kind}}"), unit="ops"),
        prom("Ingest bytes received per second", (
            f"sum(rate(coreplane_ingest_received_bytes_total{{{i}}}[5m]))", "as sent"), unit="Bps"),
        prom("Ingest rejects per second", (
            f"sum by (reason) (rate(coreplane_ingest_rejects_total{{{i}}}[5m]))", "{{reason}}"), unit="ops"),
        prom("Range query time (p95)", (
            "histogram_quantile(0.95, sum by (le, source) "
            f"(rate(coreplane_metrics_query_duration_seconds_bucket{{{i}}}[5m])))", "{{source}}"), unit="s",
            description="GET /api/v1/metrics, by where the figures came from (raw, 1m, 1h roll-ups)."),
        prom("Actions per minute by state", (
            f"60 * max by (kind, state) (rate(coreplane_actions_total{{{i}}}[5m]))", "{{kind}} {{state}}"),
            description="From the audit trail: the same on every process, hence max."),
        prom("Rule evaluations per minute", (
            f"60 * max by (rule, outcome) (rate(coreplane_policy_evaluations_total{{{i}}}[5m]))",
            "{{rule}} {{outcome}}"), description="Firings and suppressions the policy engine recorded."),
        prom("Store connection pool", (f"coreplane_db_pool_checked_out{{{i}}}", "in use {{instance}}"),
             (f"coreplane_db_pool_size{{{i}}}", "pool size {{instance}}")),
        prom("CPU", (f'rate(process_cpu_seconds_total{{job="coreplane", {i}}}[5m])', "{{instance}}"),
             unit="percentunit"),
        prom("Memory", (f'process_resident_memory_bytes{{job="coreplane", {i}}}', "{{instance}}"),
             unit="bytes"),
        sql("Points stored per service", """
            SELECT $__timeGroupAlias(timestamp, '5m'), service_name AS metric, count(*) AS value
            FROM infrastructure_metrics
            WHERE $__timeFilter(timestamp) AND service_name IN ($service)
            GROUP BY 1, 2 ORDER BY 1"""),
        sql("Settings", """
            SELECT setting_type, max(updated_at) AS last_changed, count(*) AS rows
            FROM infrastructure_settings GROUP BY setting_type ORDER BY last_changed DESC""", table=True,
            description="Which settings exist and when they last changed (never their values: "
                        "a document may hold a secret)."),
    ])


def tasks() -> grafana.Dashboard:
    s = SI
    return dashboard("coreplane-tasks", "coreplane / Tasks (Celery)",
        "Celery workers, queues (depth, consumers, oldest message, wait and runtime) and task "
        "outcomes per task name; the store's task history (task_runs) for the slowest and "
        "failing task names.",
        service_variables("coreplane_celery_workers_online"), [
        *health_panels("celery"),
        prom("Workers online", (f"coreplane_celery_workers_online{{{s}}}", "{{service}}")),
        prom("Tasks per second by outcome", (
            f"sum by (state) (rate(coreplane_celery_tasks_total{{{s}}}[5m]))", "{{state}}"), unit="ops",
            description="Throughput: tasks finished per second, by outcome (a retry is not an outcome)."),
        prom("Queue depth", (f"coreplane_celery_queue_length{{{s}}}", "{{queue}}"),
             description="Messages waiting in each queue (not yet delivered to a worker)."),
        prom("Consumers per queue", (f"coreplane_celery_queue_consumers{{{s}}}", "{{queue}}"),
             description="Worker connections consuming each queue: 0 with messages waiting means "
                         "nothing runs them (alert CeleryQueueNoConsumer)."),
        prom("Oldest message age", (f"coreplane_celery_queue_oldest_age_seconds{{{s}}}", "{{queue}}"),
             unit="s", description="How long the oldest waiting message of each queue has waited "
                                   "(RabbitMQ's head_message_timestamp; 0 when the queue is empty)."),
        prom("Wait p95 per queue", (
            f'coreplane_celery_task_wait_seconds{{{s}, quantile="0.95"}}', "{{queue}}"), unit="s",
            description="Time from when a task was due (sent, or its ETA) to its start, p95 over the "
                        "agent's last minute (alert CeleryTaskWaitHigh; the celery-scale-up-on-wait "
                        "rule)."),
        prom("Runtime p95 per queue", (
            f'coreplane_celery_task_runtime_seconds{{{s}, quantile="0.95"}}', "{{queue}}"), unit="s",
            description="Runtime of the tasks that succeeded, p95 over the agent's last minute."),
        prom("Failures per second by task", (
            f'sum by (task) (rate(coreplane_celery_task_events_total{{{s}, state="failed"}}[5m]))',
            "{{task}}"), unit="ops",
            description="Tasks failing for good (after their retries), per task name (alert "
                        "CeleryTaskFailureRatioHigh)."),
        prom("Mean task runtime", (
            f"sum(rate(coreplane_celery_task_runtime_seconds_total{{{s}}}[5m])) "
            f'/ sum(rate(coreplane_celery_tasks_total{{{s}, state="succeeded"}}[5m]))', "runtime"), unit="s"),
        sql("Slowest task names (task history)", """
            SELECT name AS task, count(*) AS runs,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY runtime_s) AS "runtime p50 (s)",
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY runtime_s) AS "runtime p95 (s)",
                   avg(CASE WHEN state = 'FAILURE' THEN 1.0 ELSE 0.0 END) AS "failed share"
            FROM task_runs
            WHERE $__timeFilter(finished_at) AND name IS NOT NULL
            GROUP BY name ORDER BY 4 DESC NULLS LAST LIMIT 20""", table=True,
            description="Task names finished in the time range, slowest p95 runtime first (task_runs, "
                        "captured from Celery's events)."),
        sql("Failures by task name (task history)", """
            SELECT $__timeGroupAlias(finished_at, '5m'), name AS metric,
                   count(*) FILTER (WHERE state = 'FAILURE') AS value
            FROM task_runs
            WHERE $__timeFilter(finished_at) AND name IS NOT NULL
            GROUP BY 1, 2 ORDER BY 1""",
            description="Runs that failed for good per 5 minutes, per task name (0 for names that "
                        "ran without failing)."),
        *store_panels("coreplane_celery_queue_length", "Queue length"),
    ])


def realtime() -> grafana.Dashboard:
    s = SI
    # The serves' own /metrics (job coreplane): each process counts the members connected to
    # it. The agent's realtime collector re-exposes its figures under coreplane-backends,
    # hence the job.
    r = 'job="coreplane", instance=~"$serve"'
    delivery = f"sum by (le) (rate(coreplane_rt_delivery_seconds_bucket{{{r}}}[5m]))"
    return dashboard("coreplane-realtime", "coreplane / Realtime (websockets)",
        "/ws/rt on every serve process: connections open and opened/closed, room messages in and "
        "out per room kind, fan-out, delivery latency, dropped and refused frames, presence; the "
        "Channels layer's round trip and the console's own websockets.",
        [*service_variables("coreplane_channels_up"),
         variable("serve", 'label_values(coreplane_rt_connections{job="coreplane"}, instance)')], [
        prom("Connections open", (f"sum(coreplane_rt_connections{{{r}}})", "open"), kind="stat", width=6),
        prom("Rooms with members", (f"sum(coreplane_rt_rooms{{{r}}})", "rooms"), kind="stat", width=6),
        prom("Room memberships", (f"sum(coreplane_rt_presence{{{r}}})", "members"), kind="stat", width=6),
        prom("Delivery p99 (5 min)", (f"histogram_quantile(0.99, {delivery})", "p99"), kind="stat",
             width=6, unit="s", description="Alert RealtimeDeliveryP99High over 50 ms."),
        prom("Connections open per serve", (f"sum by (instance) (coreplane_rt_connections{{{r}}})",
                                            "{{instance}}")),
        prom("Connections opened and closed per second", (
            f"sum(rate(coreplane_rt_connections_opened_total{{{r}}}[5m]))", "opened"),
            (f"sum by (reason) (rate(coreplane_rt_connections_closed_total{{{r}}}[5m]))",
             "closed {{reason}}"),
            unit="ops", description="Closed by reason: client, idle, too_slow, abuse, restart, refused "
                                    "(alert RealtimeConnectionChurn)."),
        prom("Messages in per second by room kind", (
            f"sum by (kind) (rate(coreplane_rt_messages_in_total{{{r}}}[5m]))", "{{kind}}"), unit="ops",
            description="Room messages published (a room chat:42 is of kind chat:*)."),
        prom("Messages out per second by room kind", (
            f"sum by (kind) (rate(coreplane_rt_messages_out_total{{{r}}}[5m]))", "{{kind}}"), unit="ops",
            description="Message frames queued to members: messages in times their fan-out."),
        prom("Fan-out size", (
            f"sum(rate(coreplane_rt_fanout_members_sum{{{r}}}[5m])) "
            f"/ sum(rate(coreplane_rt_fanout_members_count{{{r}}}[5m]))", "mean"),
            ("histogram_quantile(0.95, sum by (le) "
             f"(rate(coreplane_rt_fanout_members_bucket{{{r}}}[5m])))", "p95"),
            description="Members of one process a room message went to."),
        prom("Delivery latency (p50, p95, p99)", *[(
            f"histogram_quantile({q}, {delivery})", f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
            unit="s", description="From publish to the frame handed to the member's socket."),
        prom("Frames dropped and refused per second", (
            f"sum(rate(coreplane_rt_frames_dropped_total{{{r}}}[5m])) or vector(0)", "dropped (too slow)"),
            (f"sum(rate(coreplane_rt_frames_refused_total{{{r}}}[5m])) or vector(0)", "refused"),
            unit="ops", description="Dropped: frames for clients too slow to read them (closed 4409; "
                                    "alert RealtimeDropRateHigh). Refused: client frames answered with "
                                    "an error (invalid, too large, rate limited, forbidden...)."),
        prom("Presence by room kind", (f"sum by (kind) (coreplane_rt_presence{{{r}}})", "{{kind}}"),
             description="Room memberships held, per room kind."),
        prom("Gap fills per second", (f"sum(rate(coreplane_rt_gap_fills_total{{{r}}}[5m]))", "gap fills"),
             unit="ops", description="Room messages read back from history because the channel layer "
                                     "lost or reordered them."),
        *health_panels("channels"),
        prom("Channel layer up", (f"coreplane_channels_up{{{s}}}", "{{instance}}")),
        prom("Round trip through the channel layer", (
            f"coreplane_channels_round_trip_seconds{{{s}}}", "{{instance}}"), unit="s"),
        prom("Console websockets open", ('sum by (instance) (coreplane_console_websockets{job="coreplane"})',
                                         "{{instance}}")),
        prom("Console live renders per second", (
            "sum by (page) (rate(coreplane_console_live_render_seconds_count"
            '{job="coreplane"}[5m]))', "{{page}}")),
        *store_panels("coreplane_channels_round_trip_seconds", "Round trip", "s"),
    ])


def storage() -> grafana.Dashboard:
    s = SI
    # coreplane's buckets: the bucket gauges every serve reads from the store (the same on each
    # process, hence max) and each serve's own S3 calls (summed over the processes).
    b = 'job="coreplane", bucket=~"$bucket"'
    calls = f"rate(coreplane_storage_request_seconds_count{{{b}}}[5m])"
    latency = f"sum by (le, op) (rate(coreplane_storage_request_seconds_bucket{{{b}}}[5m]))"
    return dashboard("coreplane-storage", "coreplane / Storage (S3)",
        "coreplane's buckets (controlplane/storage): bytes, objects and growth, quota used, S3 calls "
        "per second, p50/p95 latency and errors by operation, bytes moved, top prefixes; and the "
        "object server seen by its agent: reachability, every bucket's size and the canary.",
        [*service_variables("coreplane_s3_up"),
         variable("bucket", 'label_values(coreplane_storage_bucket_used_bytes{job="coreplane"}, bucket)')], [
        prom("Buckets managed", (f"count(max by (bucket) (coreplane_storage_bucket_used_bytes{{{b}}}))",
                                 "buckets"), kind="stat", width=6),
        prom("Bytes stored", (f"sum(max by (bucket) (coreplane_storage_bucket_used_bytes{{{b}}}))", "bytes"),
             kind="stat", width=6, unit="bytes"),
        prom("S3 calls per second", (f"sum({calls})", "calls"), kind="stat", width=6, unit="ops"),
        prom("Failed calls", (
            f"sum(rate(coreplane_storage_errors_total{{{b}}}[5m])) / sum({calls})", "failed"),
            kind="stat", width=6, unit="percentunit",
            description="Every error the S3 server answered, absent keys included (alert StorageErrorRate "
                        "leaves those out)."),
        prom("Bytes per bucket", (f"max by (bucket) (coreplane_storage_bucket_used_bytes{{{b}}})",
                                  "{{bucket}}"), unit="bytes",
             description="Latest objects' bytes at the storage round's last count (every 5 minutes)."),
        prom("Objects per bucket", (f"max by (bucket) (coreplane_storage_bucket_objects{{{b}}})",
                                    "{{bucket}}")),
        prom("Quota used", (
            f"max by (bucket) (coreplane_storage_bucket_used_bytes{{{b}}}) "
            f"/ max by (bucket) (coreplane_storage_bucket_quota_bytes{{{b}}})", "{{bucket}}"),
            unit="percentunit", description="Buckets with a quota (alert StorageQuotaNearlyFull over 90 %)."),
        prom("Growth per day", (
            # deriv over the raw samples: a [6h:5m] subquery has no point until two 5-minute
            # steps have passed, so a new bucket (or a new Prometheus) showed nothing.
            f"86400 * max by (bucket) (deriv(coreplane_storage_bucket_used_bytes{{{b}}}[6h]))",
            "{{bucket}}"), unit="bytes",
            description="Bytes a day each bucket grows by, over the last 6 hours."),
        prom("S3 calls per second by operation", (f"sum by (op) ({calls})", "{{op}}"), unit="ops"),
        prom("Latency by operation (p50, p95)", *[(
            f"histogram_quantile({q}, {latency})", f"p{round(q * 100)} {{{{op}}}}") for q in (0.5, 0.95)],
            unit="s", description="Each S3 call the storage library made, timed as it returned."),
        prom("Errors per second by operation and code", (
            f"sum by (op, code) (rate(coreplane_storage_errors_total{{{b}}}[5m]))", "{{op}} {{code}}"),
            unit="ops"),
        prom("Bytes moved per second", (
            f"sum by (direction) (rate(coreplane_storage_bytes_total{{{b}}}[5m]))", "{{direction}}"),
            unit="Bps", description="Object bytes uploaded (in) and downloaded (out) through the library."),
        sql("Bucket size (store)", """
            SELECT $__timeGroupAlias(timestamp, '5m'), tags->>'bucket' AS metric, max(value) AS value
            FROM infrastructure_metrics
            WHERE $__timeFilter(timestamp) AND metric_type = 'coreplane_storage_usage_bytes'
              AND service_name = 'coreplane-storage' AND tags->>'bucket' IN ($bucket)
            GROUP BY 1, 2 ORDER BY 1""", unit="bytes",
            description="Every full count the storage round wrote (the growth GET /api/v1/storage/analytics "
                        "serves), versions excluded."),
        sql("Top prefixes (last count)", """
            SELECT DISTINCT ON (tags->>'bucket', tags->>'prefix') tags->>'bucket' AS bucket,
                   tags->>'prefix' AS prefix, value AS bytes, timestamp AS counted
            FROM infrastructure_metrics
            WHERE $__timeFilter(timestamp) AND metric_type = 'coreplane_storage_usage_prefix_bytes'
              AND service_name = 'coreplane-storage' AND tags->>'bucket' IN ($bucket)
            ORDER BY tags->>'bucket', tags->>'prefix', timestamp DESC LIMIT 200""", table=True,
            unit="bytes", description="The ten largest first path segments of each bucket at its counts "
                                      "in the time range (the latest per prefix)."),
        *health_panels("s3"),
        prom("Canary time by operation", (f"coreplane_s3_canary_seconds{{{s}}}", "{{op}}"), unit="s",
             description="The agent's put/get/delete of a tiny object (alert StorageCanarySlow: p95 "
                         "over 10 minutes above 1 s)."),
        prom("Buckets on the server", (f"coreplane_s3_buckets{{{s}}}", "{{instance}}")),
        prom("Objects per bucket (agent)", (f"coreplane_s3_bucket_objects{{{s}}}", "{{bucket}}"),
             description="Every bucket of the server, managed or not, as the agent counts it."),
        prom("Bytes per bucket (agent)", (f"coreplane_s3_bucket_bytes{{{s}}}", "{{bucket}}"), unit="bytes"),
        *store_panels("coreplane_s3_canary_seconds", "Canary time", "s"),
    ])


def search() -> grafana.Dashboard:
    s = SI
    return dashboard("coreplane-search", "coreplane / Search (Elasticsearch)",
        "Cluster status, shards, nodes and JVM heap.",
        service_variables("coreplane_elasticsearch_cluster_status"), [
        *health_panels("elasticsearch"),
        prom("Cluster status (0 green, 1 yellow, 2 red)", (
            f"coreplane_elasticsearch_cluster_status{{{s}}}", "{{instance}}"), kind="stat", width=8),
        prom("Nodes", (f"coreplane_elasticsearch_nodes{{{s}}}", "{{instance}}"), kind="stat", width=8),
        prom("Unassigned shards", (f"coreplane_elasticsearch_unassigned_shards{{{s}}}", "{{instance}}"),
             kind="stat", width=8),
        prom("JVM heap used", (
            f"coreplane_elasticsearch_jvm_heap_used_bytes{{{s}}}"
            " / coreplane_elasticsearch_jvm_heap_max_bytes",
            "{{node}}"), unit="percentunit", width=24),
        *store_panels("coreplane_elasticsearch_cluster_status", "Cluster status"),
    ])


def cache() -> grafana.Dashboard:
    s = SI
    return dashboard("coreplane-cache", "coreplane / Cache (Redis, Memcached)",
        "Redis primaries and replicas, Memcached nodes: hits, memory, replication.",
        service_variables('{__name__=~"coreplane_redis_up|coreplane_memcached_up"}'), [
        *health_panels("redis|memcached"),
        prom("Redis lookups per second", (
            f"sum by (instance) (rate(coreplane_redis_keyspace_hits_total{{{s}}}[5m]))", "hits {{instance}}"),
            (f"sum by (instance) (rate(coreplane_redis_keyspace_misses_total{{{s}}}[5m]))",
             "misses {{instance}}"), unit="ops"),
        prom("Redis operations per second", (f"coreplane_redis_ops_per_second{{{s}}}", "{{instance}}"),
             unit="ops"),
        prom("Redis replication lag", (f"coreplane_redis_replication_lag_seconds{{{s}}}", "{{instance}}"),
             unit="s", description="Seconds since each replica last heard from its primary."),
        prom("Redis replicas behind", (f"coreplane_redis_replica_lag_bytes{{{s}}}", "{{replica}}"),
             unit="bytes", description="Bytes of the primary's stream each replica has not applied yet."),
        prom("Redis memory", (f"coreplane_redis_used_memory_bytes{{{s}}}", "{{instance}}"), unit="bytes"),
        prom("Redis clients and keys", (f"coreplane_redis_connected_clients{{{s}}}", "clients {{instance}}"),
             (f"coreplane_redis_keys{{{s}}}", "keys {{instance}}")),
        prom("Evictions per second", (
            f"rate(coreplane_redis_evicted_keys_total{{{s}}}[5m])", "redis {{instance}}"),
            (f"rate(coreplane_memcached_evictions_total{{{s}}}[5m])", "memcached {{instance}}"), unit="ops"),
        prom("Memcached gets per second", (
            f"rate(coreplane_memcached_get_hits_total{{{s}}}[5m])", "hits {{instance}}"),
            (f"rate(coreplane_memcached_get_misses_total{{{s}}}[5m])", "misses {{instance}}"), unit="ops"),
        prom("Memcached memory", (f"coreplane_memcached_bytes{{{s}}}", "used {{instance}}"),
             (f"coreplane_memcached_limit_bytes{{{s}}}", "limit {{instance}}"), unit="bytes"),
        *store_panels("coreplane_redis_used_memory_bytes", "Redis memory", "bytes"),
    ])


def queues() -> grafana.Dashboard:
    s = SI
    return dashboard("coreplane-queues", "coreplane / Queues (RabbitMQ)",
        "Messages ready and unacknowledged, rates, consumers, node memory and alarms.",
        service_variables("coreplane_rabbitmq_up"), [
        *health_panels("rabbitmq"),
        prom("Messages", (f"coreplane_rabbitmq_messages_ready{{{s}}}", "ready {{instance}}"),
             (f"coreplane_rabbitmq_messages_unacked{{{s}}}", "unacked {{instance}}")),
        prom("Publish and deliver rate", (
            f"coreplane_rabbitmq_publish_per_second{{{s}}}", "publish {{instance}}"),
            (f"coreplane_rabbitmq_deliver_per_second{{{s}}}", "deliver {{instance}}"), unit="ops"),
        prom("Ready messages by queue (top 10)", (
            f"topk(10, coreplane_rabbitmq_queue_messages_ready{{{s}}})", "{{vhost}} {{queue}}")),
        prom("Consumers by queue (top 10)", (
            f"topk(10, coreplane_rabbitmq_queue_consumers{{{s}}})", "{{vhost}} {{queue}}")),
        prom("Node memory", (
            f"coreplane_rabbitmq_node_memory_bytes{{{s}}} / coreplane_rabbitmq_node_memory_limit_bytes",
            "{{node}}"), unit="percentunit", description="Memory used against the high watermark."),
        prom("Alarms (1 raised)", (f"coreplane_rabbitmq_alarm{{{s}}}", "{{node}} {{alarm}}")),
        *store_panels("coreplane_rabbitmq_messages_ready", "Messages ready"),
    ])


def messaging() -> grafana.Dashboard:
    s = SI + ', vhost=~"$vhost", queue=~"$queue"'
    return dashboard("coreplane-messaging", "coreplane / Messaging (RabbitMQ queues)",
        "Messaging's queues one by one: depth, ready and unacked, publish/deliver/ack/redeliver "
        "rates, consumers and their utilisation, the oldest message's age, dead letters arriving "
        "in each queue's DLQ; and the store's dead-letter archive (mq_dead_letters) by reason.",
        [*service_variables("coreplane_rabbitmq_queue_messages"),
         variable("vhost", 'label_values(coreplane_rabbitmq_queue_messages{service=~"$service"}, vhost)'),
         variable("queue", 'label_values(coreplane_rabbitmq_queue_messages{vhost=~"$vhost"}, queue)')], [
        prom("Depth per queue", (f"coreplane_rabbitmq_queue_messages{{{s}}}", "{{vhost}} {{queue}}"),
             description="Messages in each queue, ready and unacked (alert RabbitMQQueueBacklogGrowing)."),
        prom("Ready and unacked", (
            f"sum by (queue) (coreplane_rabbitmq_queue_messages_ready{{{s}}})", "ready {{queue}}"),
             (f"sum by (queue) (coreplane_rabbitmq_queue_messages_unacked{{{s}}})", "unacked {{queue}}"),
             description="Ready: waiting for a consumer; unacked: delivered, not yet acknowledged."),
        prom("Publish, deliver and ack rates", (
            f"sum by (queue) (coreplane_rabbitmq_queue_publish_per_second{{{s}}})", "publish {{queue}}"),
            (f"sum by (queue) (coreplane_rabbitmq_queue_deliver_per_second{{{s}}})", "deliver {{queue}}"),
            (f"sum by (queue) (coreplane_rabbitmq_queue_ack_per_second{{{s}}})", "ack {{queue}}"), unit="ops",
            description="Messages per second over RabbitMQ's last sample, per queue."),
        prom("Redeliveries", (f"coreplane_rabbitmq_queue_redeliver_per_second{{{s}}}", "{{vhost}} {{queue}}"),
             unit="ops", description="Messages delivered again (a consumer died or requeued before acking; "
                                     "alert RabbitMQRedeliveryStorm)."),
        prom("Consumers", (f"coreplane_rabbitmq_queue_consumers{{{s}}}", "{{vhost}} {{queue}}"),
             description="Consumers of each queue: 0 with ready messages fires RabbitMQQueueNoConsumer."),
        prom("Consumer utilisation", (
            f"coreplane_rabbitmq_queue_consumer_utilisation{{{s}}}", "{{vhost}} {{queue}}"),
            unit="percentunit",
            description="Share of time the queue could deliver to its consumers at once: low means the "
                        "consumers are the bottleneck (slow handlers or a small prefetch)."),
        prom("Oldest message age", (
            f"coreplane_rabbitmq_queue_oldest_age_seconds{{{s}}}", "{{vhost}} {{queue}}"),
             unit="s", description="How long the head message has waited (from its timestamp property; "
                                   "0 when the queue is empty, none when its messages carry no timestamp)."),
        prom("Dead letters", (
            f"coreplane_rabbitmq_queue_dead_letter_per_second{{{s}}}", "arriving/s {{queue}}"),
            (f"coreplane_rabbitmq_queue_dead_letters{{{s}}}", "in DLQ {{queue}}"),
            description="Per source queue Q: the rate messages arrive in Q.dlq and what it holds (the "
                        "archive drains it; alert RabbitMQDeadLetterQueueNotEmpty)."),
        sql("Archived dead letters by reason", """
            SELECT $__timeGroupAlias(dead_at, '5m'), reason AS metric, count(*) AS value
            FROM mq_dead_letters
            WHERE $__timeFilter(dead_at)
            GROUP BY 1, 2 ORDER BY 1""",
            description="Dead letters the archive stored per 5 minutes, by reason (failed: out of "
                        "retries; invalid: failed its schema; rejected: the handler refused it; "
                        "expired, maxlen: the broker's own)."),
        sql("Archived dead letters by queue", """
            SELECT queue, reason, state, count(*) AS "dead letters", max(dead_at) AS "last"
            FROM mq_dead_letters
            WHERE $__timeFilter(dead_at)
            GROUP BY queue, reason, state ORDER BY 4 DESC LIMIT 50""", table=True,
            description="The archive (mq_dead_letters) per source queue, reason and state (dead, "
                        "replayed, discarded); replay them from the console's dead letters page."),
    ])


def mesh() -> grafana.Dashboard:
    s = SI
    servers = f'{s}, server!~"FRONTEND|BACKEND"'
    return dashboard("coreplane-mesh", "coreplane / Mesh (HAProxy)",
        "Service-to-service traffic through HAProxy: every backend and server, their checks, "
        "sessions and queues.",
        service_variables("coreplane_haproxy_up"), [
        *health_panels("haproxy"),
        prom("Servers up", (f"coreplane_haproxy_up{{{servers}}}", "{{proxy}}/{{server}}")),
        prom("Server checks passing", (f"coreplane_haproxy_check_ok{{{servers}}}", "{{proxy}}/{{server}}")),
        prom("Sessions per server", (f"coreplane_haproxy_current_sessions{{{servers}}}",
                                     "{{proxy}}/{{server}}")),
        prom("Queued requests per backend", (
            f'coreplane_haproxy_queue_current{{{s}, server="BACKEND"}}', "{{proxy}}")),
        prom("Backend responses per second by code", (
            f'sum by (proxy, code) (rate(coreplane_haproxy_responses_total{{{s}, server="BACKEND"}}[5m]))',
            "{{proxy}} {{code}}"), unit="ops"),
        prom("Server weights (0 drained)", (f"coreplane_haproxy_weight{{{servers}}}",
                                            "{{proxy}}/{{server}}")),
        *store_panels("coreplane_haproxy_current_sessions", "Sessions"),
    ])


def load_balancer() -> grafana.Dashboard:
    s = SI
    front = f'{s}, server="FRONTEND"'
    return dashboard("coreplane-load-balancer", "coreplane / Load balancer (HAProxy)",
        "Client traffic at HAProxy's frontends: request rate, sessions, responses by code.",
        service_variables("coreplane_haproxy_up"), [
        *health_panels("haproxy"),
        prom("Frontends up", (f"coreplane_haproxy_up{{{front}}}", "{{proxy}}")),
        prom("Requests per second", (f"coreplane_haproxy_request_rate{{{front}}}", "{{proxy}}"),
             unit="reqps"),
        prom("Current sessions", (f"coreplane_haproxy_current_sessions{{{front}}}", "{{proxy}}")),
        prom("Responses per second by code", (
            f"sum by (proxy, code) (rate(coreplane_haproxy_responses_total{{{front}}}[5m]))",
            "{{proxy}} {{code}}"), unit="ops"),
        prom("5xx share", (
            f'sum by (proxy) (rate(coreplane_haproxy_responses_total{{{front}, code="5xx"}}[5m])) '
            f"/ sum by (proxy) (rate(coreplane_haproxy_responses_total{{{front}}}[5m]))", "{{proxy}}"),
            unit="percentunit", width=24),
        *store_panels("coreplane_haproxy_request_rate", "Requests per second", "reqps"),
    ])


# fmt: on

DASHBOARDS = {
    "overview": overview,
    "control-plane": control_plane,
    "tasks": tasks,
    "realtime": realtime,
    "storage": storage,
    "search": search,
    "cache": cache,
    "queues": queues,
    "messaging": messaging,
    "mesh": mesh,
    "load-balancer": load_balancer,
}


def render() -> dict[str, str]:
    """File name -> JSON text, as committed."""
    return {
        f"{name}.json": json.dumps(build().build(), cls=JSONEncoder, indent=2) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
