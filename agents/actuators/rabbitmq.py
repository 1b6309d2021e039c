"""RabbitMQ: publish archived dead letters again (``rabbitmq.publish``, over AMQP with
publisher confirms) and purge a queue (``rabbitmq.purge``, through the management API).

The agent's rabbitmq target gives both addresses: its ``address`` is the management API
(as the collector reads it), ``options.amqp_url`` the AMQP URL, ``options.vhost`` the
virtual host (else the AMQP URL's, else "/"); ``bind`` fills them in."""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote

from agents.actuators import ActuatorError, require
from agents.http import HttpClient

log = logging.getLogger("coreplane.agent.rabbitmq")

PURGE_TIMEOUT_S = 10.0


def publish(params: dict[str, Any]) -> dict[str, Any]:
    """Publish each of ``messages`` to its original exchange and routing key (straight to
    its queue when that was the default exchange), persistent, each confirmed by the broker.
    Returns the ids published and, per id, why one was not (unroutable, say): a message is
    reported published only once the broker confirmed it."""
    from amqp import Message  # type: ignore[import-untyped]  # no py.typed

    from controlplane.messaging.connection import broker_errors, connect

    (amqp_url, messages) = require(params, "amqp_url", "messages")
    published: list[str] = []
    failed: dict[str, str] = {}
    try:
        with connect(amqp_url, confirms=True) as conn:
            conn.ensure_connection(max_retries=2)
            channel = conn.channel()
            for item in messages:
                exchange = item.get("exchange") or ""
                routing_key = (item.get("routing_key") or "") if exchange else (item.get("queue") or "")
                message = Message(base64.b64decode(item["body"]), delivery_mode=2,
                                  application_headers=item.get("headers") or {},
                                  **_properties(item))  # fmt: skip
                try:
                    channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=True)
                    published.append(item["id"])
                except conn.channel_errors as exc:
                    # Unroutable (no queue bound) or the exchange is gone: this one stays dead.
                    # A fresh channel: the refused one may be closed or owe a confirm.
                    failed[item["id"]] = f"{exchange or '(default)'}/{routing_key}: {exc}"
                    channel = _fresh(conn, channel)
    except broker_errors() as exc:
        if not published:
            raise ActuatorError(
                f"RabbitMQ at {_where(amqp_url)} refused: {type(exc).__name__}: {exc}"
            ) from None
        # Some went: report them, so they are marked replayed and the rest stays dead.
        rest = [m["id"] for m in messages if m["id"] not in published and m["id"] not in failed]
        failed |= dict.fromkeys(rest, f"the broker went away: {type(exc).__name__}: {exc}")
    return {"published": published, "failed": failed}


def _properties(item: dict[str, Any]) -> dict[str, Any]:
    props = dict(item.get("properties") or {})
    if item.get("message_id"):
        props["message_id"] = item["message_id"]
    if isinstance(props.get("timestamp"), str):  # the archive keeps it as ISO 8601
        try:
            props["timestamp"] = datetime.fromisoformat(props["timestamp"])
        except ValueError:
            props.pop("timestamp")
    return props


def _fresh(conn: Any, channel: Any) -> Any:
    try:
        channel.close()
    except Exception:  # noqa: BLE001 - closed already by the broker
        log.debug("the refused channel was closed already")
    return conn.channel()


def _where(url: str) -> str:
    """The URL without its credentials, for an error message."""
    return url.rpartition("@")[2]


def purge(params: dict[str, Any]) -> dict[str, Any]:
    """Empty ``queue`` in the target's virtual host; how many messages it held just before."""
    (management_url, queue) = require(params, "management_url", "queue")
    vhost = params.get("vhost") or "/"
    path = f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"
    http = HttpClient(management_url, timeout_s=PURGE_TIMEOUT_S)
    found = http.get(path, columns="name,messages,messages_ready")
    if found.status == 404:
        raise ActuatorError(f"no queue {queue!r} in virtual host {vhost!r}")
    found.raise_for_status()
    depth = _depth(params.get("amqp_url"), queue)
    if depth is None:  # no AMQP URL: the management API's figure (its statistics lag a few seconds)
        depth = found.json().get("messages_ready") or 0
    done = http.request("DELETE", path + "/contents")
    done.raise_for_status()
    return {"queue": queue, "vhost": vhost, "purged": depth}


def _depth(amqp_url: str | None, queue: str) -> int | None:
    """The queue's ready messages as the broker counts them now (a passive declare)."""
    if not amqp_url:
        return None
    from controlplane.messaging.connection import broker_errors, connect

    try:
        with connect(amqp_url, confirms=False) as conn:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
    except broker_errors() as exc:
        log.warning("could not count queue %s before the purge: %s", queue, exc)
        return None
