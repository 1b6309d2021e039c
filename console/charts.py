"""Chart data for console/static/charts.js (uPlot): series from the store's range queries,
aligned on one time axis. Queries pick the roll-ups when the step allows, so a chart over
an hour reads 1-minute roll-ups, not raw points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from controlplane.store.queries import SeriesQuery, pick_source, series
from controlplane.store.queries import combined as combined_series


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.removesuffix("Z")).replace(tzinfo=UTC).timestamp())


def aligned(found: list[dict], label_key: str = "service_name", unit: str = "") -> dict:
    """{x: [epoch s], series: [{label, values}], unit} with one value slot per x (None = gap)."""
    xs = sorted({p[0] for s in found for p in s["points"]})
    slot = {x: i for i, x in enumerate(xs)}
    out = []
    for s in found:
        values: list[float | None] = [None] * len(xs)
        for x, v in s["points"]:
            values[slot[x]] = v
        label = s["labels"].get(label_key) or s["labels"].get("service_name")
        out.append({"label": str(label), "values": values})
    return {"x": [_epoch(x) for x in xs], "series": out, "unit": unit}


def query(
    session: Session,
    metric_type: str,
    *,
    now: datetime,
    window: timedelta = timedelta(hours=1),
    step_s: int = 60,
    agg: str = "avg",
    service_name: str | None = None,
    tags: dict[str, str] | None = None,
    group_by: str | None = None,
) -> list[dict]:
    q = SeriesQuery(metric_type=metric_type, start=now - window, end=now, step_s=step_s, agg=agg,
                    service_name=service_name, tags=tags or {}, group_by=group_by)  # fmt: skip
    return series(session, q, pick_source(q))


def across(
    session: Session,
    metric_type: str,
    *,
    now: datetime,
    agg: str,
    combine: str,
    tags: dict[str, str] | None = None,
    window: timedelta = timedelta(hours=1),
    step_s: int = 60,
) -> dict:
    """One series over every service (a tile's figure): per bucket, ``combine`` of each
    service's ``agg``, computed by the database (one row per bucket)."""
    q = SeriesQuery(metric_type=metric_type, start=now - window, end=now, step_s=step_s, agg=agg,
                    tags=tags or {})  # fmt: skip
    rows = combined_series(session, q, pick_source(q), combine)
    x = [int(b.replace(tzinfo=UTC).timestamp()) for b, _ in rows]
    return {"x": x, "series": [{"label": metric_type, "values": [v for _, v in rows]}], "unit": ""}


# The console's time ranges: (window, step). Steps are whole minutes or hours from 1 h up,
# so those charts read the roll-ups; 15 minutes is fine-grained enough to want raw points.
RANGES = {
    "15m": (timedelta(minutes=15), 15),
    "1h": (timedelta(hours=1), 60),
    "6h": (timedelta(hours=6), 300),
    "24h": (timedelta(hours=24), 600),
    "7d": (timedelta(days=7), 3600),
}
STEPS = (15, 60, 300, 600, 1800, 3600, 21600, 86400)


def step_for(window: timedelta, buckets: int = 300) -> int:
    """The finest step of the ladder that keeps a window under ``buckets`` points."""
    return next((s for s in STEPS if window / timedelta(seconds=s) <= buckets), STEPS[-1])


def scaled(data: dict, scale: float) -> dict:
    """``data`` with every value multiplied by ``scale`` (bytes to MiB, seconds to ms)."""
    if scale == 1:
        return data
    series = [
        {**s, "values": [None if v is None else v * scale for v in s["values"]]} for s in data["series"]
    ]
    return {**data, "series": series}


def latest(values: list[float | None]) -> float | None:
    """The most recent value that is not a gap."""
    return next((v for v in reversed(values) if v is not None), None)
