"""Reachability of the configured backends, each asked through its own protocol.

A backend whose address is unset is "not configured": shown as such, never an
error. Probes run in threads, concurrently, each bounded by a timeout, so one
hung backend cannot hold the console page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Engine

from controlplane.settings import Settings
from controlplane.store.db import ping


@dataclass(frozen=True)
class BackendStatus:
    name: str
    address: str | None
    state: str  # "up" | "down" | "not configured"
    detail: str = ""
    latency_ms: float | None = None

    @property
    def configured(self) -> bool:
        return self.state != "not configured"


@dataclass(frozen=True)
class Backend:
    name: str
    address: Callable[[Settings], str | None]
    probe: Callable[[Settings, float], str]  # returns a short detail; raises when down


def _redact(url: str | None) -> str | None:
    """The address without its password, fit to show on a page."""
    if url is None or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _configured(address: str | None) -> str:
    assert address is not None  # probe_one asks only a configured backend
    return address


def _probe_redis(s: Settings, timeout: float) -> str:
    import redis

    client = redis.Redis.from_url(
        _configured(s.redis.url), socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        info = client.info("replication")
        return f"role {info['role']}, {info.get('connected_slaves', 0)} replica(s)"
    finally:
        client.close()


def _probe_memcached(s: Settings, timeout: float) -> str:
    from pymemcache.client.base import Client

    versions = []
    for server in s.memcached.servers:
        host, _, port = server.rpartition(":")
        client = Client((host, int(port)), connect_timeout=timeout, timeout=timeout)
        try:
            versions.append(client.version().decode())
        finally:
            client.close()
    return f"{len(versions)} node(s), version {versions[0]}"


def _probe_store(engine: Engine) -> str:
    ping(engine)
    return engine.dialect.name


def _probe_postgres(s: Settings, timeout: float) -> str:
    import psycopg

    dsn = _configured(s.postgres.url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout))) as conn:
        version_row = conn.execute("SHOW server_version").fetchone()
        recovery_row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    assert version_row is not None and recovery_row is not None  # each query returns one row
    version, in_recovery = version_row[0], recovery_row[0]
    return f"PostgreSQL {version}, {'replica' if in_recovery else 'primary'}"


def _http_get(url: str, timeout: float, auth: tuple[str, str] | None = None) -> httpx.Response:
    response = httpx.get(url, timeout=timeout, auth=auth)
    response.raise_for_status()
    return response


def _probe_rabbitmq(s: Settings, timeout: float) -> str:
    body = _http_get(f"{s.rabbitmq.management_url}/api/overview", timeout).json()
    return f"RabbitMQ {body.get('rabbitmq_version')}, node {body.get('node')}"


def _probe_elasticsearch(s: Settings, timeout: float) -> str:
    es = s.elasticsearch
    auth = (es.username, es.password or "") if es.username else None
    body = _http_get(f"{es.url}/_cluster/health", timeout, auth).json()
    return f"cluster {body['status']}, {body['number_of_nodes']} node(s)"


def _probe_s3(s: Settings, timeout: float) -> str:
    scheme = "https" if s.s3.secure else "http"
    # An anonymous request: any S3 answer (even AccessDenied) proves the API is serving.
    response = httpx.get(f"{scheme}://{s.s3.endpoint}/", timeout=timeout)
    if response.status_code >= 500:
        response.raise_for_status()
    return f"S3 API answers ({response.status_code})"


def _probe_haproxy(s: Settings, timeout: float) -> str:
    from agents.collectors.haproxy import runtime_command

    answer = runtime_command(_configured(s.haproxy.socket), "show info", timeout)
    fields = dict(line.split(": ", 1) for line in answer.splitlines() if ": " in line)
    return f"HAProxy {fields.get('Version', '?')}, {fields.get('CurrConns', '?')} connection(s)"


def _probe_prometheus(s: Settings, timeout: float) -> str:
    body = _http_get(f"{s.prometheus.url}/api/v1/status/buildinfo", timeout).json()
    return f"Prometheus {body['data']['version']}"


def _probe_alertmanager(s: Settings, timeout: float) -> str:
    body = _http_get(f"{s.alertmanager.url}/api/v2/status", timeout).json()
    return f"Alertmanager {body['versionInfo']['version']}, cluster {body['cluster']['status']}"


BACKENDS: list[Backend] = [
    Backend("postgres", lambda s: s.postgres.url, _probe_postgres),
    Backend("redis", lambda s: s.redis.url, _probe_redis),
    Backend(
        "memcached",
        lambda s: ",".join(s.memcached.servers) or None,
        _probe_memcached,
    ),
    Backend("rabbitmq", lambda s: s.rabbitmq.management_url, _probe_rabbitmq),
    Backend("elasticsearch", lambda s: s.elasticsearch.url, _probe_elasticsearch),
    Backend("s3", lambda s: s.s3.endpoint, _probe_s3),
    Backend("haproxy", lambda s: s.haproxy.socket, _probe_haproxy),
    Backend("prometheus", lambda s: s.prometheus.url, _probe_prometheus),
    Backend("alertmanager", lambda s: s.alertmanager.url, _probe_alertmanager),
]


def probe_one(backend: Backend, settings: Settings) -> BackendStatus:
    address = backend.address(settings)
    shown = _redact(address)
    if not address:
        return BackendStatus(backend.name, None, "not configured")
    timeout = settings.server.probe_timeout_s
    started = time.perf_counter()
    try:
        detail = backend.probe(settings, timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; the reason is shown
        return BackendStatus(backend.name, shown, "down", f"{type(exc).__name__}: {exc}"[:300])
    latency = (time.perf_counter() - started) * 1000
    return BackendStatus(backend.name, shown, "up", detail, round(latency, 1))


async def probe_all(settings: Settings, store: Engine) -> list[BackendStatus]:
    """The store (through the app's own engine), then every backend; concurrently, never raises."""
    backends = [Backend("store", lambda s: s.database_url, lambda s, t: _probe_store(store)), *BACKENDS]
    return list(
        await asyncio.gather(*(asyncio.to_thread(probe_one, backend, settings) for backend in backends))
    )
