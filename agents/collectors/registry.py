"""Every collector, by target type. Imported lazily: an agent needs only the clients of
the backends it watches. The keys are the target types agent.yaml accepts
(agents.config.TargetType)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.collectors.base import CollectorClass

COLLECTORS = {
    "redis": "agents.collectors.redis:RedisCollector",
    "memcached": "agents.collectors.memcached:MemcachedCollector",
    "postgres": "agents.collectors.postgres:PostgresCollector",
    "rabbitmq": "agents.collectors.rabbitmq:RabbitMQCollector",
    "celery": "agents.collectors.celery:CeleryCollector",
    "elasticsearch": "agents.collectors.elasticsearch:ElasticsearchCollector",
    "s3": "agents.collectors.s3:S3Collector",
    "haproxy": "agents.collectors.haproxy:HAProxyCollector",
    "channels": "agents.collectors.channels:ChannelsCollector",
    "http": "agents.collectors.http:HttpCollector",
    "host": "agents.collectors.host:HostCollector",
    "cache": "agents.collectors.cache:CacheCollector",
    "realtime": "agents.collectors.realtime:RealtimeCollector",
}


def collector_class(kind: str) -> CollectorClass:
    module, _, name = COLLECTORS[kind].partition(":")
    collector: CollectorClass = getattr(import_module(module), name)
    return collector
