"""The storage dashboard shows each figure the analytics part serves: bucket bytes, objects
and quota from the serves' store-read gauges, S3 calls, latency and errors by operation, the
store's growth and top prefixes, and the agent's canary."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane import telemetry
from controlplane.storage import analytics, metrics

BOARD = Path(__file__).resolve().parents[3] / "dashboards" / "json" / "storage.json"


def _targets() -> list[dict]:
    board = json.loads(BOARD.read_text())
    assert board["uid"] == "coreplane-storage"
    return [t for p in board["panels"] for t in p["targets"]]


def _served() -> list[str]:
    """The names /metrics serves storage's figures under, from the code that serves them (a
    rename there fails this test until the dashboard follows)."""
    gauges = [family.name for family in telemetry._storage_gauges([("b", 1, 1, 1)])]
    requests, errors, moved = (
        m.describe()[0].name for m in (metrics.REQUESTS, metrics.ERRORS, metrics.BYTES)
    )
    return [*gauges, f"{requests}_count", f"{requests}_bucket", f"{errors}_total", f"{moved}_total"]


def test_every_storage_figure_has_a_panel_on_the_serves_job_and_the_bucket_variable():
    exprs = " ".join(t.get("expr", "") for t in _targets())
    served = _served()
    assert len(served) == 7  # the loop below checks every one, none vacuously
    for metric in served:
        assert f'{metric}{{job="coreplane", bucket=~"$bucket"}}' in exprs, f"no panel reads {metric}"
    requests = metrics.REQUESTS.describe()[0].name
    assert f"histogram_quantile(0.95, sum by (le, op) (rate({requests}_bucket" in exprs
    assert "coreplane_s3_canary_seconds{" in exprs


def test_the_store_panels_read_the_series_the_usage_round_writes():
    sql = " ".join(t.get("rawSql", "") for t in _targets())
    for metric in (analytics.BYTES, analytics.PREFIX_BYTES):
        assert f"metric_type = '{metric}'" in sql
    assert f"service_name = '{analytics.SERVICE}'" in sql
