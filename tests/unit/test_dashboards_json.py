"""dashboards/json/ is what dashboards/build.py writes with grafana-foundation-sdk, and every
field in it is one the SDK's dashboard schema knows (the SDK reads it back unchanged)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_json_is_what_the_script_writes():
    written = build_module().render()
    on_disk = {p.name: p.read_text() for p in (DASHBOARDS / "json").glob("*.json")}
    assert on_disk == written, "dashboards/json is stale: run `.venv/bin/python dashboards/build.py`"


def test_the_sdk_reads_every_dashboard_back_unchanged():
    """A key the schema does not have (a typo, a field of an older schema) is dropped on the
    way back, so the round trip differs."""
    for path in sorted((DASHBOARDS / "json").glob("*.json")):
        dashboard = json.loads(path.read_text())
        again = json.loads(json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder))
        assert again == dashboard, path.name


def test_the_tasks_dashboard_shows_queues_outcomes_per_task_and_the_task_history():
    """Each figure the Celery collector reports per queue and per task name has a panel, and
    the history panels read task_runs."""
    tasks = json.loads((DASHBOARDS / "json" / "tasks.json").read_text())
    queries = [t for p in tasks["panels"] for t in p["targets"]]
    exprs = " ".join(t.get("expr", "") for t in queries)
    for metric in ("coreplane_celery_queue_length", "coreplane_celery_queue_consumers",
                   "coreplane_celery_queue_oldest_age_seconds", "coreplane_celery_task_wait_seconds",
                   "coreplane_celery_task_runtime_seconds", "coreplane_celery_task_events_total",
                   "coreplane_celery_tasks_total"):  # fmt: skip
        assert f"{metric}{{" in exprs, f"no panel reads {metric}"
    history = [t["rawSql"] for t in queries if "FROM task_runs" in t.get("rawSql", "")]
    assert len(history) == 2 and any("percentile_cont(0.95)" in q for q in history)


def test_the_realtime_dashboard_shows_each_realtime_figure():
    """Each figure a serve's /metrics has for /ws/rt (controlplane/realtime/metrics.py) has a
    panel, on the serves' own job and the dashboard's serve variable."""
    realtime = json.loads((DASHBOARDS / "json" / "realtime.json").read_text())
    assert realtime["title"] == "coreplane / Realtime (websockets)"
    exprs = " ".join(t.get("expr", "") for p in realtime["panels"] for t in p["targets"])
    for metric in ("coreplane_rt_connections", "coreplane_rt_connections_opened_total",
                   "coreplane_rt_connections_closed_total", "coreplane_rt_messages_in_total",
                   "coreplane_rt_messages_out_total", "coreplane_rt_fanout_members_sum",
                   "coreplane_rt_delivery_seconds_bucket", "coreplane_rt_frames_dropped_total",
                   "coreplane_rt_frames_refused_total", "coreplane_rt_presence", "coreplane_rt_rooms"):  # fmt: skip
        assert f'{metric}{{job="coreplane", instance=~"$serve"}}' in exprs, f"no panel reads {metric}"
    assert all(f"histogram_quantile({q}, sum by (le) (rate(coreplane_rt_delivery_seconds_bucket" in exprs
               for q in (0.5, 0.95, 0.99))  # fmt: skip
