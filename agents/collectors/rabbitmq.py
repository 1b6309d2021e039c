"""RabbitMQ through its management API: per-queue ready/unacked/consumers, their utilisation,
publish/deliver/ack/redeliver rates, the age of the oldest message and each queue's
dead-letter rate and depth; node memory and alarms.

Dead letters: messaging names a queue Q's final dead-letter queue ``Q.dlq``
(controlplane/messaging/definition.py; an agent does not import it, so the suffix is named
again here). A ``Q.dlq`` is reported like any queue and, tagged with its source queue Q, as
``coreplane_rabbitmq_queue_dead_letters`` (its depth) and
``coreplane_rabbitmq_queue_dead_letter_per_second`` (the rate messages arrive in it);
``coreplane_rabbitmq_dead_letters`` and ``coreplane_rabbitmq_dead_letter_per_second`` sum them
over every DLQ, one series per broker, for the default rule that watches dead letters arrive
(controlplane/policy/default_rules.yaml, ``rabbitmq-dead-letters-arriving``)."""

from __future__ import annotations

import time
from typing import Any

from agents.collectors import Observation
from agents.config import TargetConfig
from agents.http import HttpClient

DLQ_SUFFIX = ".dlq"  # controlplane.messaging.definition.DLQ_SUFFIX
MAX_QUEUES = 500  # queues reported per collection: a series per queue and figure costs the store
QUEUE_COLUMNS = ",".join((
    "name", "vhost", "messages", "messages_ready", "messages_unacknowledged", "consumers",
    "consumer_utilisation", "head_message_timestamp", "message_stats",
))  # fmt: skip
RATES = (  # (message_stats key, metric): messages per second over the management API's sample
    ("publish", "coreplane_rabbitmq_queue_publish_per_second"),
    ("deliver_get", "coreplane_rabbitmq_queue_deliver_per_second"),
    ("ack", "coreplane_rabbitmq_queue_ack_per_second"),
    ("redeliver", "coreplane_rabbitmq_queue_redeliver_per_second"),
)


def _rate(stats: dict[str, Any], key: str) -> float:
    return float((stats.get(f"{key}_details") or {}).get("rate") or 0.0)


def _oldest_age_s(queue: dict[str, Any], now: float) -> float | None:
    """Seconds the head message has waited, from its timestamp property: RabbitMQ fills
    head_message_timestamp only when messages carry one (coreplane's publisher sets it), so
    a queue of unstamped messages has no age (None); an empty queue's age is 0."""
    if not queue.get("messages_ready"):
        return 0.0
    stamp = queue.get("head_message_timestamp")
    return max(0.0, now - float(stamp)) if isinstance(stamp, int | float) else None


def add_queue(obs: Observation, queue: dict[str, Any], now: float) -> None:
    """One queue's figures, tagged queue and vhost."""
    tags = {"queue": queue["name"], "vhost": queue["vhost"]}
    obs.add("coreplane_rabbitmq_queue_messages", queue.get("messages", 0), **tags)
    obs.add("coreplane_rabbitmq_queue_messages_ready", queue.get("messages_ready", 0), **tags)
    obs.add("coreplane_rabbitmq_queue_messages_unacked", queue.get("messages_unacknowledged", 0), **tags)
    obs.add("coreplane_rabbitmq_queue_consumers", queue.get("consumers", 0), **tags)
    obs.add("coreplane_rabbitmq_queue_consumer_utilisation", queue.get("consumer_utilisation"), **tags)
    obs.add("coreplane_rabbitmq_queue_oldest_age_seconds", _oldest_age_s(queue, now), **tags)
    stats = queue.get("message_stats") or {}
    for key, metric in RATES:
        obs.add(metric, _rate(stats, key), **tags)
    if queue["name"].endswith(DLQ_SUFFIX):
        source = {"queue": queue["name"].removesuffix(DLQ_SUFFIX), "vhost": queue["vhost"]}
        obs.add("coreplane_rabbitmq_queue_dead_letters", queue.get("messages", 0), **source)
        obs.add("coreplane_rabbitmq_queue_dead_letter_per_second", _rate(stats, "publish"), **source)


class RabbitMQCollector:
    def __init__(self, target: TargetConfig) -> None:
        self.http = HttpClient(target.address, timeout_s=target.timeout_s)

    def collect(self) -> Observation:
        obs = Observation()
        overview = self.http.get("/api/overview", columns="rabbitmq_version,message_stats,queue_totals")
        overview.raise_for_status()
        body = overview.json()
        stats = body.get("message_stats", {})
        obs.add("coreplane_rabbitmq_up", 1)
        obs.add("coreplane_rabbitmq_publish_per_second", stats.get("publish_details", {}).get("rate"))
        obs.add(
            "coreplane_rabbitmq_deliver_per_second",
            stats.get("deliver_get_details", {}).get("rate"),
        )
        totals = body.get("queue_totals", {})
        obs.add("coreplane_rabbitmq_messages_ready", totals.get("messages_ready"))
        obs.add("coreplane_rabbitmq_messages_unacked", totals.get("messages_unacknowledged"))
        capped = self._queues(obs)
        alarms = self._nodes(obs)
        if alarms:
            obs.status, obs.message = "critical", "; ".join(alarms)
        else:
            obs.message = f"RabbitMQ {body.get('rabbitmq_version')}, {capped}"
        return obs

    def _queues(self, obs: Observation) -> str:
        """Report up to MAX_QUEUES queues (by name, so the same ones each time); say how many."""
        # The management API pages and sorts on the server: one page of MAX_QUEUES, total known.
        queues = self.http.get(
            "/api/queues", columns=QUEUE_COLUMNS, page=1, page_size=MAX_QUEUES, sort="name"
        )
        queues.raise_for_status()
        page = queues.json()
        listed = page.get("items", [])
        total = int(page.get("total_count", len(listed)))
        now = time.time()
        dead, arriving = 0.0, 0.0
        for queue in listed:
            add_queue(obs, queue, now)
            if queue["name"].endswith(DLQ_SUFFIX):
                dead += queue.get("messages", 0) or 0
                arriving += _rate(queue.get("message_stats") or {}, "publish")
        obs.add("coreplane_rabbitmq_dead_letters", dead)
        obs.add("coreplane_rabbitmq_dead_letter_per_second", arriving)
        if total > len(listed):
            return f"{total} queue(s), capped: the first {len(listed)} by name reported"
        return f"{total} queue(s)"

    def _nodes(self, obs: Observation) -> list[str]:
        nodes = self.http.get("/api/nodes", columns="name,mem_used,mem_limit,mem_alarm,disk_free_alarm")
        nodes.raise_for_status()
        alarms = []
        for node in nodes.json():
            obs.add("coreplane_rabbitmq_node_memory_bytes", node.get("mem_used"), node=node["name"])
            obs.add(
                "coreplane_rabbitmq_node_memory_limit_bytes",
                node.get("mem_limit"),
                node=node["name"],
            )
            for alarm in ("mem_alarm", "disk_free_alarm"):
                on = bool(node.get(alarm))
                obs.add("coreplane_rabbitmq_alarm", 1 if on else 0, node=node["name"], alarm=alarm)
                if on:
                    alarms.append(f"{alarm} on {node['name']}")
        return alarms

    def close(self) -> None:
        self.http.close()
