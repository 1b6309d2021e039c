"""Actuators: what an agent can do to a backend. Each takes the action's params and
returns an output dict, or raises ActuatorError with a reason. Registered explicitly."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


class ActuatorError(Exception):
    pass


ACTUATORS = {
    "redis.promote": "agents.actuators.redis:promote",
    "redis.repoint": "agents.actuators.redis:repoint",
    "cache.flush": "agents.actuators.cache:flush",
    "haproxy.set_server": "agents.actuators.haproxy:set_server",
    "celery.pool": "agents.actuators.celery:pool",
    "rabbitmq.publish": "agents.actuators.rabbitmq:publish",
    "rabbitmq.purge": "agents.actuators.rabbitmq:purge",
}


def actuator(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if kind not in ACTUATORS:
        raise ActuatorError(f"unknown action kind {kind!r}; this agent knows: {', '.join(sorted(ACTUATORS))}")
    module, _, name = ACTUATORS[kind].partition(":")
    return getattr(import_module(module), name)


def bind(kind: str, params: dict[str, Any], targets: list[Any]) -> dict[str, Any]:
    """Fill in the connection details from this agent's own targets when the control plane
    names a catalog ``service`` (and ``instance``, host:port): credentials stay here."""
    from agents.runtime import instance_of

    service, instance = params.get("service"), params.get("instance")
    if not service:
        return params
    mine = [t for t in targets if t.name == service]
    if not mine:
        raise ActuatorError(f"this agent watches no service {service!r}")

    def find(*types: str, any_instance: bool = False) -> list[Any]:
        return [
            t for t in mine
            if t.type in types and (any_instance or instance is None or instance_of(t.address) == instance)
        ]  # fmt: skip

    bound = dict(params)
    if kind.startswith("redis."):
        (target, *_) = find("redis") or [None]
        if target is None:
            raise ActuatorError(f"this agent watches no Redis {instance} in {service!r}")
        bound["address"] = target.address
    elif kind == "cache.flush":
        redis_targets = find("redis")
        if redis_targets:
            bound["redis_url"] = redis_targets[0].address
        memcached = find("memcached", any_instance=True)
        if memcached:
            bound["memcached_servers"] = [t.address for t in memcached]
    elif kind == "celery.pool":
        bound.setdefault("broker", next((t.address for t in find("celery", any_instance=True)), None))
    elif kind == "haproxy.set_server":
        bound.setdefault("socket", next((t.address for t in find("haproxy", any_instance=True)), None))
    elif kind.startswith("rabbitmq."):
        bound |= _rabbitmq(find("rabbitmq") or find("rabbitmq", any_instance=True), service)
    return bound


def _rabbitmq(found: list[Any], service: str) -> dict[str, Any]:
    """A rabbitmq target's addresses: ``address`` is the management API, ``options.amqp_url``
    the AMQP URL and ``options.vhost`` the virtual host (else the AMQP URL's, else "/")."""
    from urllib.parse import unquote, urlsplit

    if not found:
        raise ActuatorError(f"this agent watches no RabbitMQ in {service!r}")
    target = found[0]
    amqp_url = target.options.get("amqp_url")
    path = urlsplit(amqp_url or "").path
    vhost = target.options.get("vhost") or (unquote(path[1:]) if len(path) > 1 else "/")
    return {"management_url": target.address, "amqp_url": amqp_url, "vhost": vhost}


def require(params: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if params.get(n) in (None, "")]
    if missing:
        raise ActuatorError(f"missing parameter(s): {', '.join(missing)}")
    return [params[n] for n in names]
