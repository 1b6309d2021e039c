"""Redis replication: promote a replica (REPLICAOF NO ONE), repoint one (REPLICAOF host port)."""

from __future__ import annotations

from typing import Any

import redis

from agents.actuators import ActuatorError, require


def _client(address: str) -> redis.Redis:
    return redis.Redis.from_url(address, socket_timeout=5, socket_connect_timeout=5)


def promote(params: dict[str, Any]) -> dict[str, Any]:
    (address,) = require(params, "address")
    client = _client(address)
    try:
        client.replicaof("NO", "ONE")
        info = client.info("replication")
    finally:
        client.close()
    if info["role"] != "master":
        raise ActuatorError(f"{address} is still {info['role']} after REPLICAOF NO ONE")
    return {"role": info["role"], "replication_offset": info.get("master_repl_offset")}


def repoint(params: dict[str, Any]) -> dict[str, Any]:
    address, host, port = require(params, "address", "primary_host", "primary_port")
    client = _client(address)
    try:
        client.replicaof(host, int(port))
        info = client.info("replication")
    finally:
        client.close()
    if (info.get("master_host"), info.get("master_port")) != (host, int(port)):
        raise ActuatorError(
            f"{address} follows {info.get('master_host')}:{info.get('master_port')}, not {host}:{port}"
        )
    return {"role": info["role"], "primary": f"{host}:{port}"}
