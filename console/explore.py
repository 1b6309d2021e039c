"""The metrics explorer: a GET form, so the URL holds the query and can be shared. It runs
the API's range query (controlplane/store/queries.py) with the API's limits, draws the
series and lists each one's latest value; a query the API would refuse is shown with its
reason and status 422."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console import charts
from console.render import render
from console.session import require_role
from controlplane.api.deps import DB_SESSION
from controlplane.api.metrics import MAX_BUCKETS
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.ops.queries import parse_tag_filters, parse_time
from controlplane.store.models import MetricRollup1h
from controlplane.store.queries import AGGREGATES, SeriesQuery, bucket_count, pick_source, series

router = APIRouter(include_in_schema=False)
MAX_STEP_S = 31 * 86400  # as GET /api/v1/metrics
TAGS_SAMPLE = 500


class BadQuery(ValueError):
    """A query the explorer cannot run; the message says what to change."""


def _time(name: str, text: str) -> datetime:
    try:
        return parse_time(name, text)
    except Rejected as exc:
        raise BadQuery(str(exc)) from None


def _tags(items: list[str]) -> dict[str, str]:
    """key=value filters, repeated or comma-separated (spaces around them ignored), checked
    as the API checks its own."""
    parts = [part.strip() for text in items for part in text.split(",") if part.strip()]
    tidy = ["=".join(side.strip() for side in part.partition("=")[::2]) if "=" in part else part
            for part in parts]  # fmt: skip
    try:
        return parse_tag_filters(tidy)
    except Rejected as exc:
        raise BadQuery(str(exc)) from None


def parse(params: dict, now: datetime, rollup_1m_days: int) -> tuple[SeriesQuery, str]:
    """(query, source) from the form's fields, checked as the API checks them."""
    metric, agg = params["metric"], params["agg"]
    if len(metric) > 50:
        raise BadQuery("a metric name has at most 50 characters")
    if agg not in AGGREGATES:
        raise BadQuery(f"unknown aggregation {agg!r}: use one of {', '.join(AGGREGATES)}")
    if len(params["service"]) > 50 or len(params["group_by"]) > 64:
        raise BadQuery("a service name has at most 50 characters, a group-by tag key at most 64")
    if params["range"] not in charts.RANGES:
        raise BadQuery(f"unknown range {params['range']!r}: use one of {', '.join(charts.RANGES)}")
    window, step = charts.RANGES[params["range"]]
    end = _time("end", params["end"]) if params["end"] else now
    start = _time("start", params["start"]) if params["start"] else end - window
    if start >= end:
        raise BadQuery("start must be before end")
    if params["start"] or params["end"]:
        step = charts.step_for(end - start)
    if params["step"]:
        try:
            step = int(params["step"])
        except ValueError:
            raise BadQuery(f"step {params['step']!r} must be a whole number of seconds") from None
        if not 1 <= step <= MAX_STEP_S:
            raise BadQuery(f"step must be between 1 and {MAX_STEP_S} seconds")
    query = SeriesQuery(metric_type=metric, start=start, end=end, step_s=step, agg=agg,
                        service_name=params["service"] or None, tags=_tags(params["tags"]),
                        group_by=params["group_by"] or None)  # fmt: skip
    if bucket_count(query) > MAX_BUCKETS:
        raise BadQuery(
            f"{bucket_count(query)} buckets per series, over {MAX_BUCKETS}: raise step or narrow the range"
        )
    return query, pick_source(query, oldest_1m=end - timedelta(days=rollup_1m_days))


def _seen(session: Session, now: datetime, metric: str) -> dict:
    """What to offer in the form: metric types and services with a 1-hour roll-up bucket in
    the last hour or two (one indexed range over a few rows per series), and the tag keys of
    the chosen metric."""
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    pairs = session.execute(
        select(MetricRollup1h.metric_type, MetricRollup1h.service_name)
        .where(MetricRollup1h.bucket >= since)
        .distinct()
    ).all()
    keys: set[str] = set()
    if metric:
        for (tags,) in session.execute(
            select(MetricRollup1h.tags)
            .where(MetricRollup1h.metric_type == metric, MetricRollup1h.bucket >= since)
            .limit(TAGS_SAMPLE)
        ):
            keys.update(tags or {})
    return {
        "metrics": sorted({m for m, _ in pairs} | ({metric} if metric else set())),
        "services": sorted({s for m, s in pairs if not metric or m == metric}),
        "tag_keys": sorted(keys),
    }


def _result(found: list[dict], group_by: str | None) -> tuple[dict, list[dict]]:
    """Chart data and, per series, its latest value."""
    for s in found:
        labels = s["labels"]
        labels["series"] = labels["service_name"] + (f" · {labels.get(group_by)}" if group_by else "")
    data = charts.aligned(found, "series")
    rows = []
    for s in found:
        at, value = next(((at, v) for at, v in reversed(s["points"]) if v is not None), (None, None))
        labels = s["labels"]
        group = labels.get(group_by) if group_by else None
        rows.append({"label": labels["series"], "service": labels["service_name"], "group": group,
                     "at": at, "value": value})  # fmt: skip
    return data, rows


def _form(request: Request) -> dict:
    q = request.query_params
    field = {k: q.get(k, "").strip() for k in ("metric", "service", "start", "end", "step", "group_by")}
    field["agg"] = q.get("agg", "").strip() or "avg"
    field["range"] = q.get("range", "").strip() or "1h"
    return field | {"tags": [t for t in q.getlist("tags") if t.strip()]}


def _links(form: dict, query: SeriesQuery, source: str) -> dict:
    """The page's own URL for this query (to share) and the same query on the API."""
    shared = [(k, form[k]) for k in ("metric", "service", "range", "start", "end", "step", "agg", "group_by")]
    shared = [(k, v) for k, v in shared if v] + [("tags", t) for t in form["tags"]]
    api = [("metric_type", query.metric_type), ("start", query.start.isoformat() + "Z"),
           ("end", query.end.isoformat() + "Z"), ("step", query.step_s), ("agg", query.agg),
           ("source", source)]  # fmt: skip
    api += [("service_name", query.service_name)] if query.service_name else []
    api += [("group_by", query.group_by)] if query.group_by else []
    api += [("tags", f"{k}={v}") for k, v in query.tags.items()]
    return {"share": "/explore?" + urlencode(shared), "api": "/api/v1/metrics?" + urlencode(api)}


@router.get("/explore")
def explore_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    now, form = utcnow(), _form(request)
    ctx = {"form": form, "aggregates": AGGREGATES, "ranges": tuple(charts.RANGES), "error": None,
           "result": None} | _seen(session, now, form["metric"])  # fmt: skip
    if not form["metric"]:
        return render(request, "explore.html", ctx)
    try:
        query, source = parse(form, now, request.app.state.settings.retention.rollup_1m_days)
    except BadQuery as exc:
        return render(request, "explore.html", ctx | {"error": str(exc)}, status=422)
    data, rows = _result(series(session, query, source), query.group_by)
    ctx["result"] = {"data": data, "rows": rows, "query": query, "source": source} | _links(
        form, query, source
    )
    return render(request, "explore.html", ctx)
