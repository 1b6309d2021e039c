"""The Messaging page (/messaging): every queue of messaging's virtual host with its depth,
ready and unacked, consumers and their utilisation, rates, oldest message, dead letters (its
DLQ and what the archive kept from it in the last hour), and charts of depth and rates per
queue over the last hour from what the agent pushed. Viewers read; the queue, topology and
dead-letter pages (parts A and C) hold the buttons. The queue table refreshes itself every
few seconds (an htmx poll of its block: cheaper than a live channel for a figure that changes
with every message)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from console import charts
from console.render import render
from console.session import require_role
from controlplane.clock import utcnow
from controlplane.errors import Conflict, Unavailable
from controlplane.messaging import analytics
from controlplane.messaging.connection import MessagingRuntime
from controlplane.messaging.management import Management
from controlplane.web import DB_SESSION

router = APIRouter(include_in_schema=False)
log = logging.getLogger("coreplane.console.messaging")

CHART_QUEUES = 8  # lines per chart: the deepest queues
WINDOW, STEP_S = timedelta(hours=1), 60
# (title, metric, unit): what the charts draw, one line per queue.
CHARTS = (
    ("Depth", "depth", ""),
    ("Publish rate", "publish_rate", "/s"),
    ("Deliver rate", "deliver_rate", "/s"),
    ("Ack rate", "ack_rate", "/s"),
)


def _runtime(request: Request) -> MessagingRuntime | None:
    return getattr(request.app.state, "messaging", None)


def _stats(runtime: MessagingRuntime, session: Session) -> tuple[list[dict] | None, str | None]:
    """(every queue's row, None) or (None, why the broker could not be read)."""
    try:
        with Management.of(runtime) as management:
            return analytics.queue_stats(management, session), None
    except (Unavailable, Conflict) as exc:
        log.warning("the messaging page could not read the queues: %s", exc)
        return None, str(exc)


def _charts(session: Session, runtime: MessagingRuntime, rows: list[dict]) -> list[dict]:
    """One chart per figure, a line for each of the deepest CHART_QUEUES queues."""
    deepest = {r["name"] for r in sorted(rows, key=lambda r: -r["depth"])[:CHART_QUEUES]}
    now = utcnow()
    out = []
    for title, metric, unit in CHARTS:
        found = charts.query(session, analytics.METRICS[metric], now=now, window=WINDOW, step_s=STEP_S,
                             tags={"vhost": runtime.vhost}, group_by="queue")  # fmt: skip
        found = [s for s in found if s["labels"].get("queue") in deepest]
        out.append({"title": title, "data": charts.aligned(found, label_key="queue", unit=unit)})
    return out


@router.get("/messaging")
def messaging_page(
    request: Request, _role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    runtime = _runtime(request)
    context: dict[str, Any] = {"configured": runtime is not None, "rows": None, "error": None, "charts": []}
    if runtime is not None:
        rows, error = _stats(runtime, session)
        context |= {"rows": rows, "error": error, "vhost": runtime.vhost}
        if rows:
            context["charts"] = _charts(session, runtime, rows)
    return render(request, "messaging/overview.html", context, block="queues")
