"""Console pages for tasks: runs (filters, search, pages), one run, workers, queues, dead
letters, analytics and workflows. Viewers read; every button is a form to the actions'
preview-and-confirm (console/actions.py), so RBAC, CSRF and the audit trail are the
actions' own. The runs list and one run are live pages: each commit announcing
notify.TASKS re-renders their blocks (console/live.py).

A live block is rendered once for every socket showing the same page and role, so it
holds no CSRF token: its buttons belong (HTML ``form=``) to forms outside the block."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from jinja2_fragments import render_block
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session

from console import charts
from console.live import ws_url
from console.render import render, templates
from console.session import require_role
from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected
from controlplane.ops.queries import parse_time
from controlplane.tasks import analytics, dead, history, inspect, workflows
from controlplane.tasks.operations import SIGNALS, TaskRuntime
from controlplane.web import DB_SESSION, status_of

router = APIRouter(include_in_schema=False)
log = logging.getLogger("coreplane.console.tasks")
# A broker or management API that does not answer: the page says so instead of a 500.
ENGINE_ERRORS = (httpx.HTTPError, OperationalError, OSError)

PAGE_SIZE = 50
MAX_TEXT = 200  # a filter's name, queue or search words
QUEUED, RUNNING = ("PENDING", "RECEIVED", "RETRY"), ("STARTED",)  # revoke / terminate
FILTERS = ("state", "name", "queue", "search", "since", "before", "before_id")  # before*: a page's cursor
INSPECT_TIMEOUT_S = 1.0  # how long the workers page waits for workers to answer a broadcast
DEAD_LIMIT, WORKFLOW_LIMIT, CHART_KEYS = 100, 100, 5


def _runtime(app: Any) -> TaskRuntime | None:
    """The serve's Celery app and task settings (controlplane/app.py), None without a broker."""
    return getattr(app.state, "task_runtime", None)


def _render(request: Request, name: str, context: dict, **kwargs: Any) -> Response:
    """A tasks page: every one links its siblings, and Flower when it is set."""
    flower = request.app.state.settings.tasks.flower_url
    return render(request, name, {"flower_url": flower} | context, **kwargs)


def _asked(what: str, call: Any, *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """(``call``'s answer, None) or (None, why it failed) when the engine did not answer."""
    try:
        return call(*args, **kwargs), None
    except ENGINE_ERRORS as exc:
        log.warning("the tasks page could not read %s: %s", what, exc)
        return None, f"Could not read {what}: {exc}"


# -- the runs list -----------------------------------------------------------------------


def parse_filters(params: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(list_runs' keyword arguments, the filters as given) from the page's query string."""
    given = {k: params[k].strip() for k in FILTERS if params.get(k, "").strip()}
    for field in ("name", "queue", "search"):
        if len(given.get(field, "")) > MAX_TEXT:
            raise Rejected.field(f"{field} is longer than {MAX_TEXT} characters", field, "too long")
    query = {
        "state": given.get("state", "").upper() or None,  # checked by history.list_runs
        "name": given.get("name"),
        "queue": given.get("queue"),
        "search": given.get("search"),
        "since": parse_time("since", given["since"]) if "since" in given else None,
        "before": (parse_time("before", given["before"]), given.get("before_id", ""))
        if "before" in given
        else None,
        "limit": PAGE_SIZE,
    }
    return query, {k: v for k, v in given.items() if not k.startswith("before")}


def runs_listing(session: Session, query: dict[str, Any], filters: dict[str, str]) -> dict:
    """The list block's context: the rows, a link to older ones and back to the newest."""
    rows = history.list_runs(session, **query)
    older = None
    if len(rows) == PAGE_SIZE:
        last = rows[-1]
        older = "/tasks?" + urlencode(
            {**filters, "before": last.updated_at.isoformat(), "before_id": last.task_id}
        )
    return {"rows": rows, "filters": filters, "paged": query["before"] is not None, "older": older,
            "newest": "/tasks?" + urlencode(filters)}  # fmt: skip


def _retry_all_since(filters: dict[str, str], now: datetime) -> str | None:
    """When the list shows one name's failures: from when "retry all failed" starts (the
    filter's since, else a day back), as ISO 8601 UTC."""
    if filters.get("state", "").upper() != "FAILURE" or not filters.get("name"):
        return None
    since = parse_time("since", filters["since"]) if "since" in filters else now - timedelta(days=1)
    return since.replace(microsecond=0).isoformat() + "Z"


def live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    """The newest runs matching the page's filters (an older page is not live)."""
    try:
        query, filters = parse_filters(params)
    except Rejected:
        return {}
    if query["before"] is not None:
        return {}
    with app.state.sessionmaker.begin() as session:
        ctx = runs_listing(session, query, filters) | {"role": role, "can_act": _can_act(role)}
    return {"task-runs": render_block(templates.env, "tasks/runs.html", "runs", ctx)}


def _can_act(role: str | None) -> bool:
    return role in ("operator", "admin")


@router.get("/tasks")
def runs_page(
    request: Request, role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    params = dict(request.query_params)
    base = {"form": params, "states": history.STATES, "can_act": _can_act(role), "section": "runs"}
    try:
        query, filters = parse_filters(params)
        ctx = runs_listing(session, query, filters)
        retry_since = _retry_all_since(filters, utcnow())
    except Rejected as exc:
        context = base | {"error": str(exc), "rows": None, "live": None}
        return _render(request, "tasks/runs.html", context, status=status_of(exc))
    live = None if query["before"] else ws_url("tasks", **filters)
    context = base | ctx | {"error": None, "live": live, "retry_since": retry_since}
    return _render(request, "tasks/runs.html", context, block="runs")


# -- the sub-pages (fixed paths, before /tasks/{task_id}) ----------------------------------


@router.get("/tasks/workers")
def workers_page(request: Request, _role: str = Depends(require_role("viewer"))) -> Response:
    runtime = _runtime(request.app)
    # Workers that stopped answering are still listed from the heartbeats the monitor heard.
    monitor = getattr(request.app.state, "task_monitor", None)
    heartbeats = monitor.heartbeats() if monitor is not None else None
    found, error = None, None
    if runtime is not None:
        found, error = _asked(
            "the workers", inspect.workers, runtime.app, INSPECT_TIMEOUT_S, heartbeats=heartbeats
        )
    context = {"workers": found, "error": error, "section": "workers"}
    return _render(request, "tasks/workers.html", context)


@router.get("/tasks/queues")
def queues_page(request: Request, role: str = Depends(require_role("viewer"))) -> Response:
    settings = request.app.state.settings
    configured = bool(settings.tasks.broker_url or settings.rabbitmq.url) and settings.rabbitmq.management_url
    found, error = _asked("the queues", inspect.queues, settings) if configured else (None, None)
    context = {"queues": found, "error": error, "can_act": _can_act(role), "section": "queues"}
    return _render(request, "tasks/queues.html", context)


@router.get("/tasks/dead-letters")
def dead_letters_page(request: Request, role: str = Depends(require_role("viewer"))) -> Response:
    runtime = _runtime(request.app)
    found, error = None, None
    if runtime is not None:
        found, error = _asked(
            "the dead letters", dead.list_dead, runtime.app, runtime.tasks, limit=DEAD_LIMIT
        )
    names = sorted({d["name"] for d in found or () if d.get("name")})
    context = {"dead": found, "error": error, "names": names, "can_act": _can_act(role), "section": "dead",
               "queue": request.app.state.settings.tasks.dead_letter_queue}  # fmt: skip
    return _render(request, "tasks/dead.html", context)


@router.get("/tasks/analytics")
def analytics_page(
    request: Request,
    last: str = "1h",
    _role: str = Depends(require_role("viewer")),
    session: Session = DB_SESSION,
) -> Response:
    if last not in charts.RANGES:
        raise Rejected.field(f"last must be one of {', '.join(charts.RANGES)}", "last", "invalid")
    window, step_s = charts.RANGES[last]
    until = utcnow()
    since = until - window
    tables = {by: analytics.summary(session, by=by, since=since, until=until) for by in ("name", "queue")}
    busiest = sorted(tables["name"], key=lambda r: r["count"], reverse=True)[:CHART_KEYS]
    series = {r["key"]: analytics.series(session, by="name", key=r["key"], since=since, until=until,
                                         step_s=step_s) for r in busiest}  # fmt: skip
    context = {"tables": tables, "charts": _charts(series), "last": last, "ranges": charts.RANGES,
               "section": "analytics"}  # fmt: skip
    return _render(request, "tasks/analytics.html", context)


# What the analytics charts draw from analytics.series' buckets: (title, field, unit, scale).
CHARTS = (("Runtime p95", "runtime_p95", "ms", 1000.0), ("Wait p95", "wait_p95", "ms", 1000.0),
          ("Finished runs", "count", "", 1.0), ("Failures", "failures", "", 1.0))  # fmt: skip


def _charts(series: dict[str, list[dict]]) -> list[dict]:
    """One chart per figure, one line per task name, on one time axis (console/charts.js)."""
    out = []
    for title, field, unit, scale in CHARTS:
        found = [
            {"labels": {"service_name": key}, "points": [(b["at"].isoformat(), b[field]) for b in buckets]}
            for key, buckets in series.items()
        ]
        out.append({"title": title, "data": charts.scaled(charts.aligned(found, unit=unit), scale)})
    return out


@router.get("/tasks/workflows")
def workflows_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    rows = workflows.list_workflows(session, limit=WORKFLOW_LIMIT)
    return _render(request, "tasks/workflows.html", {"workflows": rows, "section": "workflows"})


@router.get("/tasks/workflows/{workflow_id}")
def workflow_page(
    request: Request,
    workflow_id: uuid.UUID,
    role: str = Depends(require_role("viewer")),
    session: Session = DB_SESSION,
) -> Response:
    workflow = workflows.get(session, workflow_id)
    steps = workflows.steps_of(session, workflow)
    context = {"workflow": workflow, "steps": steps, "can_act": _can_act(role), "section": "workflows"}
    return _render(request, "tasks/workflow.html", context)


# -- one run -----------------------------------------------------------------------------


def run_context(session: Session, task_id: str, role: str) -> dict:
    run = history.get_run(session, task_id)
    if run is None:
        raise NotFound(f"no task {task_id!r} in the history (it may be older than the retention)")
    return {"run": run, "can_act": _can_act(role), "queued": run.state in QUEUED,
            "running": run.state in RUNNING, "signals": SIGNALS}  # fmt: skip


def run_live_blocks(app: Any, params: dict[str, str], role: str) -> dict[str, str]:
    with app.state.sessionmaker.begin() as session:
        try:
            ctx = run_context(session, params.get("task_id", ""), role)
        except NotFound:
            return {}
    return {"task-run": render_block(templates.env, "tasks/run.html", "run", ctx)}


@router.get("/tasks/{task_id}")
def run_page(
    request: Request, task_id: str, role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    ctx = run_context(session, task_id, role) | {"live": ws_url("task", task_id=task_id), "section": "runs"}
    return _render(request, "tasks/run.html", ctx, block="run")
