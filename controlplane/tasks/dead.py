"""The dead-letter queue: tasks that failed for good, to list, replay or discard.

A message is read with basic.get and held unacked: the ones an operation takes (a replay
re-publishes it first) are acked off the queue, and every other one goes back where it
was, in its order, when the channel closes (RabbitMQ requeues unacked messages in place).
So a look or a filtered replay leaves the rest of the queue as it found it, and a
control plane dying mid-way loses nothing: an unacked message returns to the queue, a
replayed one may at worst run twice (with the same task id).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from amqp import Message  # type: ignore[import-untyped]  # no py.typed

from controlplane.errors import Rejected, TooLarge
from controlplane.settings import TasksSettings
from controlplane.tasks import topology

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000  # messages one call takes at most
MAX_SCAN = 10_000  # messages one call reads (and holds) to find the ones it takes
MAX_TASK_IDS = 1000
ARGS_REPR_MAX = 500
EXCEPTION_MAX = 500
# RabbitMQ's own record of a death: dropped on replay so that it describes the next one,
# should the task fail for good again (RabbitMQ 4 ignores these from a publisher anyway).
DEATH_HEADERS = ("x-death", "x-first-death-queue", "x-first-death-reason", "x-first-death-exchange",
                 "x-last-death-queue", "x-last-death-reason", "x-last-death-exchange")  # fmt: skip


def list_dead(app: Any, tasks: TasksSettings, *, limit: int = 100) -> list[dict]:
    """The first ``limit`` dead-lettered tasks, oldest first, each with its task id, name,
    arguments (repr), original queue, reason, time of death and (from the result backend)
    exception; the queue is left as it was."""
    _check_limit(limit)
    with _held(app, tasks) as dead:
        rows = [_describe(message) for message, _ in zip(dead, range(limit), strict=False)]
    for row in rows:
        row["exception"] = _exception(app, row["task_id"])
    return rows


def replay(
    app: Any,
    tasks: TasksSettings,
    *,
    task_ids: set[str] | None = None,
    name: str | None = None,
    limit: int = 1000,
) -> list[str]:
    """Re-publish the dead-lettered tasks matching ``task_ids`` and ``name`` (all when
    both are None), ``limit`` at most, to their original queue with the same task id,
    priority and headers, each taken off the dead letters once the broker has its copy;
    the ids replayed. A task whose queue no longer exists stays dead."""
    _check_filters(task_ids, limit)
    replayed: list[str] = []
    with _held(app, tasks) as dead, app.events.default_dispatcher() as events:
        for message in dead:
            row = _describe(message)
            if not _matches(row, task_ids, name):
                continue
            if not dead.queue_exists(row["queue"]):
                log.warning("dead task %s stays: its queue %r does not exist", row["task_id"], row["queue"])
                continue
            # task-sent, as Celery sends for a task it publishes, so the history sees the new
            # attempt due now; sent before the copy is in its queue, so that no worker's
            # events for the new attempt can be older than it.
            events.send("task-sent", uuid=row["task_id"], name=row["name"], queue=row["queue"])
            dead.republish(message, row["queue"])
            dead.take(message)
            replayed.append(row["task_id"])
            if len(replayed) >= limit:
                break
    return replayed


def discard(
    app: Any,
    tasks: TasksSettings,
    *,
    task_ids: set[str] | None = None,
    name: str | None = None,
    limit: int = 1000,
) -> list[str]:
    """Drop the dead-lettered tasks matching ``task_ids`` and ``name`` (all when both are
    None), ``limit`` at most, for good; the ids dropped."""
    _check_filters(task_ids, limit)
    dropped: list[str] = []
    with _held(app, tasks) as dead:
        for message in dead:
            row = _describe(message)
            if _matches(row, task_ids, name):
                dead.take(message)
                dropped.append(row["task_id"])
                if len(dropped) >= limit:
                    break
    return dropped


class _DeadLetters:
    """The dead-letter queue read on one channel: iterating gets the messages it held when
    the pass began, oldest first (MAX_SCAN at most), each held unacked until ``take`` acks it
    off the queue. Bounded by that depth because a task a replay re-published can fail again
    at once and be dead-lettered behind the messages still to scan: the same pass would find
    it and replay it twice."""

    def __init__(self, conn: Any, channel: Any, queue: str) -> None:
        self.conn, self.channel, self.queue = conn, channel, queue
        self._exists: dict[str, bool] = {}
        self.depth = channel.queue_declare(queue, passive=True).message_count

    def __iter__(self) -> Iterator[Message]:
        for _ in range(min(self.depth, MAX_SCAN)):
            message = self.channel.basic_get(self.queue, no_ack=False)
            if message is None:
                return
            yield message

    def take(self, message: Message) -> None:
        self.channel.basic_ack(message.delivery_tag)

    def republish(self, message: Message, queue: str) -> None:
        """The same body and properties (task id, priority, Celery's headers) straight to
        ``queue`` through the default exchange, without RabbitMQ's death headers; returns
        once the broker confirms it has the copy."""
        properties = dict(message.properties)
        headers = properties.pop("application_headers", None) or {}
        kept = {k: v for k, v in headers.items() if k not in DEATH_HEADERS}
        copy = Message(message.body, application_headers=kept, **properties)
        self.channel.basic_publish(copy, exchange="", routing_key=queue, mandatory=True)

    def queue_exists(self, queue: str) -> bool:
        """A passive declare, once per queue, on a channel of its own (a refusal closes the
        channel it came on)."""
        if queue not in self._exists:
            probe = self.conn.channel()
            try:
                probe.queue_declare(queue, passive=True)
                probe.close()
                self._exists[queue] = True
            except self.conn.channel_errors:
                self._exists[queue] = False
        return self._exists[queue]


@contextmanager
def _held(app: Any, tasks: TasksSettings) -> Iterator[_DeadLetters]:
    """The dead letters on a channel of their own; closing it puts back, in place, every
    message not taken."""
    topology.declare_dead_letters(app, tasks)
    # Publisher confirms: a replay acks the dead letter only once the broker has its copy.
    with app.connection_for_write(transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        try:
            yield _DeadLetters(conn, channel, tasks.dead_letter_queue)
        finally:
            channel.close()


def _describe(message: Message) -> dict:
    headers = message.headers or {}
    death = _last_death(headers)
    return {
        "task_id": str(headers.get("id", "")),
        "name": str(headers.get("task", "")),
        "args": str(headers.get("argsrepr", ""))[:ARGS_REPR_MAX],
        "kwargs": str(headers.get("kwargsrepr", ""))[:ARGS_REPR_MAX],
        "queue": str(death.get("queue") or headers.get("x-first-death-queue") or ""),
        "reason": str(death.get("reason") or headers.get("x-first-death-reason") or ""),
        "failed_at": _utc(death.get("time")),
        "deaths": int(death.get("count") or 1),
        "retries": headers.get("retries"),
        "priority": message.properties.get("priority"),
    }


def _last_death(headers: dict) -> dict:
    """x-death's newest entry (RabbitMQ keeps the newest first)."""
    deaths = headers.get("x-death") or []
    return deaths[0] if deaths and isinstance(deaths[0], dict) else {}


def _utc(stamp: Any) -> datetime | None:
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return None


def _matches(row: dict, task_ids: set[str] | None, name: str | None) -> bool:
    return (task_ids is None or row["task_id"] in task_ids) and (name is None or row["name"] == name)


def _exception(app: Any, task_id: str) -> str | None:
    """The failure the result backend recorded, if it still has it."""
    try:
        meta = app.backend.get_task_meta(task_id, cache=False)
    except Exception as exc:  # noqa: BLE001 - a listing shows the rest when the backend cannot say
        log.warning("result of dead task %s unreadable: %s", task_id, exc)
        return None
    if meta.get("status") != "FAILURE" or not isinstance(meta.get("result"), BaseException):
        return None
    return f"{type(meta['result']).__name__}: {meta['result']}"[:EXCEPTION_MAX]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise Rejected.field(f"limit must be 1-{MAX_LIMIT}, not {limit}", "limit", "out_of_range")


def _check_filters(task_ids: set[str] | None, limit: int) -> None:
    _check_limit(limit)
    if task_ids is not None and len(task_ids) > MAX_TASK_IDS:
        raise TooLarge.field(
            f"{len(task_ids)} task ids; at most {MAX_TASK_IDS} at once", "task_ids", "too_many"
        )
