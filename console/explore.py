"""The metrics explorer: a GET form, so the URL holds the query and can be shared. It runs
the API's range query, checked by the API's use case (controlplane/ops/queries.py), draws the
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
from controlplane.clock import utcnow
from controlplane.errors import Rejected
from controlplane.ops.queries import parse_time, series_query
from controlplane.store.models import MetricRollup1h
from controlplane.store.queries import AGGREGATES, SeriesQuery, series
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)
TAGS_SAMPLE = 500


def _tags(items: list[str]) -> list[str]:
    """key=value filters, repeated or comma-separated (spaces around them ignored)."""
    parts = [part.strip() for text in items for part in text.split(",") if part.strip()]
    return ["=".join(side.strip() for side in part.partition("=")[::2]) if "=" in part else part
            for part in parts]  # fmt: skip


def _step(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Rejected.field(
            f"step {text!r} must be a whole number of seconds", "step", "not a number"
        ) from None


def parse(params: dict, now: datetime, rollup_1m_days: int) -> tuple[SeriesQuery, str]:
    """(query, source) from the form's fields: its relative range and free text made into
    the API's query, then checked by the same use case as the API's."""
    if params["range"] not in charts.RANGES:
        raise Rejected.field(
            f"unknown range {params['range']!r}: use one of {', '.join(charts.RANGES)}", "range", "unknown"
        )
    window, step = charts.RANGES[params["range"]]
    end = parse_time("end", params["end"]) if params["end"] else now
    start = parse_time("start", params["start"]) if params["start"] else end - window
    if (params["start"] or params["end"]) and start < end:
        step = charts.step_for(end - start)
    if params["step"]:
        step = _step(params["step"])
    return series_query(metric_type=params["metric"], start=start, end=end, step_s=step, agg=params["agg"],
                        service_name=params["service"] or None, tags=_tags(params["tags"]),
                        group_by=params["group_by"] or None, rollup_1m_days=rollup_1m_days)  # fmt: skip


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
    except Rejected as exc:
        return render(request, "explore.html", ctx | {"error": str(exc)}, status=status_of(exc))
    data, rows = _result(series(session, query, source), query.group_by)
    ctx["result"] = {"data": data, "rows": rows, "query": query, "source": source} | _links(
        form, query, source
    )
    return render(request, "explore.html", ctx)
