"""The storage dashboard shows each figure the analytics part serves: bucket bytes, objects
and quota from the serves' store-read gauges, S3 calls, latency and errors by operation, the
store's growth and top prefixes, and the agent's canary."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.storage import analytics

BOARD = Path(__file__).resolve().parents[3] / "dashboards" / "json" / "storage.json"


def _targets() -> list[dict]:
    board = json.loads(BOARD.read_text())
    assert board["uid"] == "coreplane-storage"
    return [t for p in board["panels"] for t in p["targets"]]


def test_every_storage_figure_has_a_panel_on_the_serves_job_and_the_bucket_variable():
    exprs = " ".join(t.get("expr", "") for t in _targets())
    for metric in ("coreplane_storage_bucket_used_bytes", "coreplane_storage_bucket_objects",
                   "coreplane_storage_bucket_quota_bytes", "coreplane_storage_request_seconds_count",
                   "coreplane_storage_request_seconds_bucket", "coreplane_storage_errors_total",
                   "coreplane_storage_bytes_total"):  # fmt: skip
        assert f'{metric}{{job="coreplane", bucket=~"$bucket"}}' in exprs, f"no panel reads {metric}"
    assert "histogram_quantile(0.95, sum by (le, op) (rate(coreplane_storage_request_seconds_bucket" in exprs
    assert "coreplane_s3_canary_seconds{" in exprs


def test_the_store_panels_read_the_series_the_usage_round_writes():
    sql = " ".join(t.get("rawSql", "") for t in _targets())
    for metric in (analytics.BYTES, analytics.PREFIX_BYTES):
        assert f"metric_type = '{metric}'" in sql
    assert f"service_name = '{analytics.SERVICE}'" in sql
