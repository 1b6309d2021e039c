"""Queue figures for the API, the console and charts.

``queue_stats`` is the broker's view now, from the management API (one request for every
queue of messaging's virtual host), with each queue's final dead-letter queue folded into its
row and, given a store session, the dead letters archived from it in the last hour.
``series`` is the history of one queue's figure, from what the RabbitMQ collector
(agents/collectors/rabbitmq.py) pushed to the store, read by the store's series query as
GET /api/v1/metrics reads it (raw points or roll-ups as the step allows), within this
module's own bounds on the window and the number of steps.

Rates are messages per second over RabbitMQ's last sample (its management API's
``*_details.rate``); the oldest message's age comes from ``head_message_timestamp``, which
RabbitMQ fills only for classic queues whose head message carries a timestamp property
(coreplane's publisher sets one), so it is None elsewhere.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.errors import NotFound, Rejected
from controlplane.messaging.definition import DLQ_SUFFIX, NAME_RE, dlq_name, source_queue
from controlplane.store.models import MqDeadLetter
from controlplane.store.queries import SeriesQuery, pick_source
from controlplane.store.queries import series as store_series

MAX_QUEUES = 500  # rows of one answer: a vhost with more is cut, named first by name
MAX_WINDOW = timedelta(days=7)
MAX_BUCKETS = 1000
ARCHIVE_WINDOW = timedelta(hours=1)
COLUMNS = [
    "name", "type", "messages", "messages_ready", "messages_unacknowledged", "consumers",
    "consumer_utilisation", "head_message_timestamp", "message_stats",
]  # fmt: skip
# The figures ``series`` charts: the short name the API takes -> the collector's metric.
METRICS = {
    "depth": "coreplane_rabbitmq_queue_messages",
    "ready": "coreplane_rabbitmq_queue_messages_ready",
    "unacked": "coreplane_rabbitmq_queue_messages_unacked",
    "consumers": "coreplane_rabbitmq_queue_consumers",
    "consumer_utilisation": "coreplane_rabbitmq_queue_consumer_utilisation",
    "publish_rate": "coreplane_rabbitmq_queue_publish_per_second",
    "deliver_rate": "coreplane_rabbitmq_queue_deliver_per_second",
    "ack_rate": "coreplane_rabbitmq_queue_ack_per_second",
    "redeliver_rate": "coreplane_rabbitmq_queue_redeliver_per_second",
    "oldest_age_s": "coreplane_rabbitmq_queue_oldest_age_seconds",
    "dead_letter_rate": "coreplane_rabbitmq_queue_dead_letter_per_second",
    "dlq_depth": "coreplane_rabbitmq_queue_dead_letters",
}


def _rate(stats: dict[str, Any], key: str) -> float:
    return float((stats.get(f"{key}_details") or {}).get("rate") or 0.0)


def _oldest_age_s(queue: dict[str, Any], now: float) -> float | None:
    if not queue.get("messages_ready"):
        return 0.0
    stamp = queue.get("head_message_timestamp")
    return max(0.0, now - float(stamp)) if isinstance(stamp, int | float) else None


def figures(queue: dict[str, Any], now: float) -> dict[str, Any]:
    """One queue's row from the management API's queue object (dead-letter fields empty)."""
    stats = queue.get("message_stats") or {}
    return {
        "name": queue["name"],
        "type": queue.get("type", "classic"),
        "depth": int(queue.get("messages") or 0),
        "ready": int(queue.get("messages_ready") or 0),
        "unacked": int(queue.get("messages_unacknowledged") or 0),
        "consumers": int(queue.get("consumers") or 0),
        "consumer_utilisation": queue.get("consumer_utilisation"),
        "publish_rate": _rate(stats, "publish"),
        "deliver_rate": _rate(stats, "deliver_get"),
        "ack_rate": _rate(stats, "ack"),
        "redeliver_rate": _rate(stats, "redeliver"),
        "oldest_age_s": _oldest_age_s(queue, now),
        "dead_letter_rate": None,
        "dlq_depth": None,
        "archived_dead": None,
    }


def archived_last_hour(session: Session, vhost: str, now: datetime) -> dict[str, int]:
    """Dead letters archived per source queue of ``vhost`` since an hour before ``now``."""
    query = (
        select(MqDeadLetter.queue, func.count())
        .where(MqDeadLetter.vhost == vhost, MqDeadLetter.dead_at >= now - ARCHIVE_WINDOW)
        .group_by(MqDeadLetter.queue)
    )
    return {queue: count for queue, count in session.execute(query)}


def queue_stats(
    management: Any, session: Session | None = None, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every queue of the management client's vhost (the first MAX_QUEUES by name), each
    with its Q.dlq's depth and arrival rate and, given a session, its archived dead letters
    of the last hour. ``now`` (naive UTC) defaults to the clock."""
    raw = sorted(management.queues(columns=COLUMNS), key=lambda q: q["name"])[:MAX_QUEUES]
    clock = time.time()
    rows = {q["name"]: figures(q, clock) for q in raw}
    for name, row in rows.items():
        dlq = rows.get(dlq_name(name)) if not name.endswith(DLQ_SUFFIX) else None
        if dlq is not None:
            row["dlq_depth"], row["dead_letter_rate"] = dlq["depth"], dlq["publish_rate"]
    if session is not None:
        archived = archived_last_hour(session, management.vhost, now or utcnow())
        for name, row in rows.items():
            if source_queue(name) is None:  # Q itself, not one of its dead-letter or retry queues
                row["archived_dead"] = archived.get(name, 0)
    return list(rows.values())


def queue_row(management: Any, name: str, session: Session | None = None) -> dict[str, Any]:
    """One queue's row as queue_stats gives it; NotFound when the vhost has no such queue."""
    _check_queue(name, "name", "path")
    for row in queue_stats(management, session):
        if row["name"] == name:
            return row
    raise NotFound(f"no queue {name!r} in virtual host {management.vhost!r}")


def _check_queue(name: str, field: str, kind: str = "query") -> None:
    if not re.fullmatch(NAME_RE, name):
        raise Rejected.field(
            f"{field} must be 1-200 of A-Z a-z 0-9 _ . : - (got {name[:40]!r})", field, "invalid", kind
        )


def check_window(since: datetime, until: datetime, step_s: int) -> None:
    """Rejected naming since or step_s: the window in order and at most MAX_WINDOW long, and
    at most MAX_BUCKETS steps in it."""
    if since >= until:
        raise Rejected.field("since must be before until", "since", "order")
    if until - since > MAX_WINDOW:
        raise Rejected.field(f"the window is {until - since}; at most {MAX_WINDOW}", "since", "too_long")
    if step_s < 1 or (until - since).total_seconds() / step_s > MAX_BUCKETS:
        raise Rejected.field(
            f"step_s must be at least 1 and give at most {MAX_BUCKETS} buckets over the window",
            "step_s",
            "out_of_range",
        )


def series(
    session: Session,
    queue: str,
    metric: str,
    since: datetime,
    until: datetime,
    step_s: int,
    *,
    vhost: str | None = None,
    rollup_1m_days: int = 7,
) -> list[dict[str, Any]]:
    """[{labels: {service_name, vhost}, points: [[iso time, value], ...]}] of one queue's
    ``metric`` (a key of METRICS) per step, averaged in each bucket, one entry per agent
    service and vhost (only ``vhost`` when given)."""
    if metric not in METRICS:
        raise Rejected.field(
            f"metric must be one of {', '.join(METRICS)}, not {metric[:40]!r}", "metric", "unknown"
        )
    _check_queue(queue, "queue")
    check_window(since, until, step_s)
    tags = {"queue": queue, **({"vhost": vhost} if vhost else {})}
    query = SeriesQuery(metric_type=METRICS[metric], start=since, end=until, step_s=step_s, tags=tags,
                        group_by="vhost")  # fmt: skip
    # The same choice of raw points or roll-ups as GET /api/v1/metrics (ops/queries.py).
    return store_series(session, query, pick_source(query, oldest_1m=until - timedelta(days=rollup_1m_days)))
