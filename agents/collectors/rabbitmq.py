"""RabbitMQ through its management API: per-queue ready/unacked/consumers, publish and
deliver rates, node memory and alarms."""

from __future__ import annotations

from agents.collectors import Observation
from agents.config import TargetConfig
from agents.http import HttpClient


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
        queues = self.http.get(
            "/api/queues",
            columns="name,vhost,messages_ready,messages_unacknowledged,consumers",
        )
        queues.raise_for_status()
        queue_list = queues.json()
        for q in queue_list:
            tags = {"queue": q["name"], "vhost": q["vhost"]}
            obs.add("coreplane_rabbitmq_queue_messages_ready", q.get("messages_ready", 0), **tags)
            obs.add(
                "coreplane_rabbitmq_queue_messages_unacked",
                q.get("messages_unacknowledged", 0),
                **tags,
            )
            obs.add("coreplane_rabbitmq_queue_consumers", q.get("consumers", 0), **tags)
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
        if alarms:
            obs.status, obs.message = "critical", "; ".join(alarms)
        else:
            obs.message = f"RabbitMQ {body.get('rabbitmq_version')}, {len(queue_list)} queue(s)"
        return obs

    def close(self) -> None:
        self.http.close()
