"""Dead letters into the store: one thread per `coreplane serve` reading every final
dead-letter queue (Q.dlq) of the definition, so a dead letter outlives a purge of its queue.

A batch (FLUSH_MESSAGES messages or FLUSH_S seconds, whichever comes first) is written in
one transaction and acked only once it committed: a crash in between redelivers it, and
the row's fingerprint (the virtual host, the queue, the message id or the body's hash, and
the death's time and count) makes the second copy a no-op. Two identical messages without a
message id dying in the same second are one fingerprint: the library's publisher always
sets an id. Several control planes read the queues as competing consumers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from kombu import Connection, Consumer, Queue
from sqlalchemy import Engine, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.messaging import definition as d
from controlplane.messaging.connection import MessagingRuntime, body_bytes, connect
from controlplane.notify import MESSAGING, announce
from controlplane.queue_reader import QueueReader
from controlplane.schemas.ingest import utc_naive
from controlplane.store.db import make_sessionmaker
from controlplane.store.models import MqDeadLetter

log = logging.getLogger("coreplane.messaging.archive")

FLUSH_MESSAGES = 100  # also the prefetch: the thread holds one batch at most
FLUSH_S = 0.2
RECHECK_S = 30.0  # how often queues missing from the broker are looked for again
# What a dead letter's headers keep: JSON-safe, each text capped, nesting and counts bounded.
HEADER_TEXT_MAX = 2000
HEADER_ITEMS_MAX = 100
HEADER_DEPTH_MAX = 6
BASE64_MARK = "base64:"
PROPERTIES = ("content_type", "content_encoding", "priority", "correlation_id", "reply_to",
              "expiration", "timestamp", "type", "user_id", "app_id", "delivery_mode")  # fmt: skip


def dead_letter_queues(runtime: MessagingRuntime) -> list[str]:
    """The final dead-letter queue of every queue of the definition that has one."""
    return [d.dlq_name(q.name) for q in runtime.definition.queues if q.dead_letter]


class Archiver(QueueReader):
    """run_once() archives what waits in the dead-letter queues now (tests); start()/stop()
    do the same in a thread that reconnects, with a capped backoff, when the broker goes away."""

    thread_name = "mq-dead-letter-archive"
    flush_items, flush_s = FLUSH_MESSAGES, FLUSH_S
    log = log

    def __init__(self, engine: Engine, runtime: MessagingRuntime) -> None:
        self.engine = engine
        self.runtime = runtime
        self.sessions = make_sessionmaker(engine)
        self.queues = dead_letter_queues(runtime)
        super().__init__()
        # The one batch: owned by the consuming thread, nothing else touches it.
        self._rows: list[dict[str, Any]] = []
        self._messages: list[Any] = []
        self.archived = 0  # rows written (a redelivered dead letter is not counted twice)

    def run_once(self, idle_s: float = 0.5, max_s: float = 30.0) -> int:
        """Archive the dead letters waiting now: until none comes for ``idle_s`` (or
        ``max_s`` passed). Returns the rows written."""
        before = self.archived
        with self.connection() as conn:
            self.consume(conn, idle_s=idle_s, deadline=time.monotonic() + max_s)
        return self.archived - before

    def start(self) -> None:
        if not self.queues:
            log.info("dead-letter archive: the definition has no dead-letter queue; not started")
            return
        super().start()

    def connection(self) -> Connection:
        return connect(self.runtime.url, confirms=False, heartbeat=30)

    def _present(self, conn: Connection) -> list[str]:
        """The dead-letter queues the broker has (a passive declare each, on a channel of its
        own: a refusal closes the channel it came on). A missing one is looked for again at
        the next reconnect, RECHECK_S later at most."""
        found = []
        for name in self.queues:
            channel = conn.channel()
            try:
                channel.queue_declare(name, passive=True)
                found.append(name)
            except conn.channel_errors:
                pass
            finally:
                if channel.is_open:
                    channel.close()
        missing = sorted(set(self.queues) - set(found))
        if missing:
            log.info(
                "dead-letter archive: not on the broker yet (apply the topology): %s", ", ".join(missing)
            )
        return found

    def consume(self, conn: Connection, *, idle_s: float | None, deadline: float | None) -> None:
        """Archive until stopped, ``deadline`` (monotonic) or ``idle_s`` without a message; a
        queue missing from the broker ends the round after RECHECK_S, to look for it again."""
        present = self._present(conn)
        if not present:
            self._stop.wait(0 if idle_s is not None else RECHECK_S)
            return
        if len(present) < len(self.queues):
            recheck = time.monotonic() + RECHECK_S
            deadline = recheck if deadline is None else min(deadline, recheck)
        queues = [Queue(name, no_declare=True) for name in present]
        channel = conn.channel()
        with Consumer(channel, queues=queues, on_message=self._on_message, prefetch_count=FLUSH_MESSAGES):
            self.drain(conn, idle_s=idle_s, deadline=deadline)

    def buffered(self) -> int:
        return len(self._messages)

    def _on_message(self, message: Any) -> None:
        if not self._messages:
            self._first_at = time.monotonic()
        dlq = message.delivery_info.get("routing_key") or ""
        # Through coreplane.dead the routing key is Q; through the default exchange it is Q.dlq.
        queue = d.source_queue(dlq) or dlq
        try:
            row = dead_letter_row(message, vhost=self.runtime.vhost, queue=queue,
                                  keep_bytes=self.runtime.settings.messaging.archive_body_bytes)  # fmt: skip
        except Exception:
            log.exception("dead-letter archive: could not read a message of %s; kept with its body only", dlq)
            row = _bare_row(message, vhost=self.runtime.vhost, queue=queue,
                            keep_bytes=self.runtime.settings.messaging.archive_body_bytes)  # fmt: skip
        self._rows.append(row)
        self._messages.append(message)

    def flush(self) -> None:
        """Write the batch in one transaction, then ack its messages."""
        rows, messages = _unique(self._rows), self._messages
        with self.sessions.begin() as session:
            written = store_rows(session, rows)
            if written:
                announce(session, MESSAGING)
        # One ack for the batch: its messages came in order on this one channel.
        messages[-1].ack(multiple=True)
        self._rows, self._messages = [], []
        self.archived += written

    def drop_batch(self) -> None:
        """After a lost connection: its unacked messages go back to the queues by themselves."""
        self._rows, self._messages = [], []


def store_rows(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose fingerprint is new (INSERT .. ON CONFLICT DO NOTHING on both
    dialects); the number written. Never commits."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    maker: Any = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(dialect)
    if maker is None:  # another database: look first (one archiver per message at a time)
        from sqlalchemy import select

        fingerprints = [r["fingerprint"] for r in rows]
        known = set(session.scalars(select(MqDeadLetter.fingerprint).where(
            MqDeadLetter.fingerprint.in_(fingerprints))))  # fmt: skip
        fresh = [r for r in rows if r["fingerprint"] not in known]
        if fresh:
            session.execute(insert(MqDeadLetter), fresh)
        return len(fresh)
    # One statement for the batch; RETURNING says which rows were new (rowcount is not
    # reliable for INSERT .. ON CONFLICT across drivers).
    stmt = maker(MqDeadLetter).values(rows).on_conflict_do_nothing(index_elements=["fingerprint"])
    return len(session.execute(stmt.returning(MqDeadLetter.id)).all())


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fingerprint within a batch (a redelivery can land beside its first copy)."""
    return list({r["fingerprint"]: r for r in reversed(rows)}.values())[::-1]


# -- one message -> one row ------------------------------------------------------------


def dead_letter_row(message: Any, *, vhost: str, queue: str, keep_bytes: int) -> dict[str, Any]:
    """The archive row of a message read from ``queue``'s dead-letter queue: why it died
    from coreplane's headers (the library's dead letters) or else RabbitMQ's newest x-death
    (expired, maxlen, rejected, delivery_limit)."""
    headers = dict(message.headers or {})
    props = message.properties or {}
    death = _death(headers, queue)
    body = body_bytes(message)
    if d.HEADER_REASON in headers:
        reason = str(headers[d.HEADER_REASON])
        source = str(headers.get(d.HEADER_QUEUE) or queue)
        exchange = headers.get(d.HEADER_EXCHANGE, death.get("exchange", ""))
        routing_key = headers.get(d.HEADER_ROUTING_KEY) or _first(death.get("routing-keys")) or source
        attempts = _int(headers.get(d.HEADER_ATTEMPT), _int(death.get("count"), 1))
        dead_at = _when(headers.get(d.HEADER_FAILED_AT)) or _when(death.get("time")) or utcnow()
        error = headers.get(d.HEADER_ERROR)
        marker = [headers.get(d.HEADER_FAILED_AT), headers.get(d.HEADER_ATTEMPT)]
    else:
        reason = str(death.get("reason") or "unknown")
        source = str(death.get("queue") or queue)
        exchange = death.get("exchange", "")
        routing_key = _first(death.get("routing-keys")) or source
        attempts = _int(death.get("count"), 1)
        dead_at = _when(death.get("time")) or utcnow()
        error = None
        marker = [_json_safe(death.get("time")), death.get("count")]
    message_id = props.get("message_id")
    identity = str(message_id) if message_id else "sha256:" + hashlib.sha256(body).hexdigest()
    marker.append(headers.get("x-coreplane-replayed"))
    fingerprint = hashlib.sha256(
        json.dumps([vhost, source, identity, reason, _json_safe(marker)], default=str).encode()
    ).hexdigest()
    return {
        "id": uuid.uuid4(),
        "fingerprint": fingerprint,
        "vhost": vhost[:200],
        "queue": source[:200],
        "exchange": str(exchange or "")[:200],
        "routing_key": str(routing_key or "")[:255],
        "message_id": str(message_id)[:200] if message_id else None,
        "content_type": str(props["content_type"])[:100] if props.get("content_type") else None,
        "properties": {k: _json_safe(props[k]) for k in PROPERTIES if props.get(k) is not None},
        "headers": _json_safe(headers),
        "body": body[:keep_bytes],
        "body_bytes": len(body),
        "truncated": len(body) > keep_bytes,
        "reason": reason[:50],
        "error": str(error)[: d.ERROR_MAX] if error is not None else None,
        "attempts": attempts,
        "dead_at": dead_at,
        "archived_at": utcnow(),
        "state": "dead",
        "replay_count": 0,
    }


def _bare_row(message: Any, *, vhost: str, queue: str, keep_bytes: int) -> dict[str, Any]:
    body = body_bytes(message)
    return {
        "id": uuid.uuid4(), "vhost": vhost[:200], "queue": queue[:200], "exchange": "", "routing_key": queue,
        "fingerprint": hashlib.sha256(json.dumps([vhost, queue, body.hex()[:4096]]).encode()).hexdigest(),
        "message_id": None, "content_type": None, "properties": {}, "headers": {},
        "body": body[:keep_bytes], "body_bytes": len(body), "truncated": len(body) > keep_bytes,
        "reason": "unknown", "error": "its headers could not be read", "attempts": 1, "dead_at": utcnow(),
        "archived_at": utcnow(), "state": "dead", "replay_count": 0,
    }  # fmt: skip


def _death(headers: dict, queue: str) -> dict:
    """x-death's entry for ``queue`` (its own death, not a retry queue's expiry), else the
    newest (RabbitMQ keeps the newest first)."""
    deaths = [x for x in headers.get("x-death") or [] if isinstance(x, dict)]
    return next((x for x in deaths if x.get("queue") == queue), deaths[0] if deaths else {})


def _first(keys: Any) -> str | None:
    return str(keys[0]) if isinstance(keys, list | tuple) and keys else None


def _int(value: Any, default: int) -> int:
    try:
        return max(0, min(int(value), 2**31 - 1))
    except (TypeError, ValueError):
        return default


def _when(value: Any) -> datetime | None:
    """Naive UTC from a datetime (x-death's time) or an ISO 8601 string (the failed-at header)."""
    try:
        if isinstance(value, datetime):
            return utc_naive(value if value.tzinfo else value.replace(tzinfo=UTC))
        if isinstance(value, str | bytes):
            text = value.decode() if isinstance(value, bytes) else value
            return utc_naive(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return None


def _json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON the store keeps: times as ISO 8601, bytes as "base64:...", texts,
    lists and objects capped (a header is never why a dead letter is lost)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)[: HEADER_TEXT_MAX * 3 // 4]
        return BASE64_MARK + base64.b64encode(raw).decode()
    if depth >= HEADER_DEPTH_MAX:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:HEADER_ITEMS_MAX]
        return {str(k)[:200]: _json_safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in list(value)[:HEADER_ITEMS_MAX]]
    return str(value).replace("\x00", "")[:HEADER_TEXT_MAX]
