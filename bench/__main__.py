"""`python -m bench [NAME...]`: run benchmarks, write bench/results/latest.{json,md}."""

from __future__ import annotations

import sys
import time

from bench import (
    agent,
    alerts,
    cache,
    console,
    failover,
    ingest,
    messaging,
    query,
    realtime,
    select1,
    storage,
    tasks,
)
from controlplane.settings import load_settings
from tests.support.results import save, table

# Every benchmark, by the names its results carry. Add new ones here.
BENCHMARKS = {
    "select1_sqlalchemy_vs_psycopg": select1.run,
    "ingest_rows_per_s": ingest.run,
    # One run measures both figures (they share the 10,000,000-point data set).
    "query_p95_ms": query.run,
    # agent_rss_vs_exporters and agent_cpu_vs_exporters (the agent vs the Debian Prometheus
    # exporters it replaces, scripts/bench-exporters.sh), agent_rss_mb and agent_cpu_pct.
    "agent_footprint": agent.run,
    # Writes failover_median_s and failover_max_s (coreplane vs Redis Sentinel).
    "failover": failover.run,
    # cache_l1_hit_vs_redis_get, cache_zipf_hit_ratio, cache_invalidation_p99_ms, cache_miss_overhead.
    "cache": cache.run,
    # console_overview_p95_ms and console_instance_p95_ms (10,000,000 metric rows, 100 services).
    "console": console.run,
    # alert_to_action_s: kill -9 of a Redis to the action a rule starts on the alert, vs
    # Prometheus+Alertmanager's own delivery to a bare receiver.
    "alerts": alerts.run,
    # task_latency_p99_ms and task_throughput_ratio (coreplane's task library vs bare Celery),
    # task_event_capture_lag_p99_ms (Celery events into the store).
    "tasks": tasks.run,
    # mq_latency_p99_ms and mq_throughput_ratio (controlplane.messaging vs raw kombu with
    # confirms), mq_loss_after_broker_kill (a private broker kill -9'd mid-stream).
    "messaging": messaging.run,
    # ws_broadcast_p99_ms and ws_broadcast_drops (1,000 members, vs the bare Channels consumer's
    # group_send), ws_connections_per_gb, ws_resume_gap, and the history store's decision
    # (docs/decisions/0009): rt_history_append_p99_ms and rt_history_append_msgs_per_s.
    "realtime": realtime.run,
    # storage_upload_mb_s and storage_download_mb_s (4 x 256 MiB through the API vs the raw minio
    # SDK), storage_small_put_p99_ms (the library vs raw put_object), storage_restore_s_per_gb
    # (a restore drill vs a raw copy loop).
    "storage": storage.run,
}


def main(argv: list[str]) -> int:
    unknown = [n for n in argv if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    settings = load_settings(_env_file="var/services.env")
    results = []
    for name in argv or list(BENCHMARKS):
        print(f"bench: {name} ...", flush=True)
        started = time.perf_counter()
        results.extend(BENCHMARKS[name](settings))
        print(f"bench: {name} done in {time.perf_counter() - started:.1f}s", flush=True)
    path = save(results)
    print(table([r.__dict__ for r in results]))
    print(f"bench: results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
