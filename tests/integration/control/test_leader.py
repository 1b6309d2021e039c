"""High availability: two `coreplane serve` on one PostgreSQL. Kill -9 the leader while
plans are being carried out; the other takes over within two lease periods, finishes
them, and the audit trail shows no action dispatched twice."""

from __future__ import annotations

import os
import secrets
import signal
import time
import uuid

import httpx
import redis

from agents.config import AgentConfig, TargetConfig
from agents.daemon import Agent, load_or_register
from controlplane.cache import Cache, RedisLayer
from tests.support.console import console_login
from tests.support.processes import free_port
from tests.support.serve import start_serve
from tests.support.services import require
from tests.support.stores import fresh_schema
from tests.support.timing import until

LEASE_S = 2.0


def _leader(url: str, admin: dict) -> dict:
    return httpx.get(f"{url}/api/v1/leader", headers=admin, timeout=5).json()


def _took_over(url: str, admin: dict) -> float | None:
    """When (monotonic) the process at ``url`` was seen leading; None while it follows."""
    return time.monotonic() if _leader(url, admin)["this_process"]["leads"] else None


def test_the_follower_takes_over_and_nothing_is_dispatched_twice(services, tmp_path):
    require(services.postgres.url, "postgres")
    require(services.redis.url, "redis")
    token = secrets.token_urlsafe(32)
    admin = {"Authorization": f"Bearer {token}"}
    with fresh_schema(services) as database_url:
        base = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
        base |= {"COREPLANE_DATABASE_URL": database_url, "COREPLANE_ADMIN_TOKEN": token,
                 "COREPLANE_CONTROL__LEASE_S": str(LEASE_S)}  # fmt: skip
        ports = [free_port(), free_port()]
        first = start_serve(base | {"COREPLANE_SERVER__PORT": str(ports[0])}, tmp_path / "a.log")
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        until(
            "the first process to take the lead", lambda: _leader(urls[0], admin)["this_process"]["leads"], 15
        )
        second = start_serve(base | {"COREPLANE_SERVER__PORT": str(ports[1])}, tmp_path / "b.log")
        agent = None
        try:
            assert not _leader(urls[1], admin)["this_process"]["leads"]
            # The follower's console says who leads; the leader's says nothing of the sort.
            follower, _ = console_login(urls[1], token=token)
            holder = _leader(urls[1], admin)["lease"]["holder"]
            assert f"This control plane follows <code>{holder}</code>" in follower.get("/").text
            leader_console, _ = console_login(urls[0], token=token)
            assert "This control plane follows" not in leader_console.get("/").text
            follower.close()
            leader_console.close()
            # A real agent, talking to the follower, with the real Redis as service "cache".
            config = AgentConfig(
                name="ha-agent", control_plane_url=urls[1], token_file=tmp_path / "agent.json",
                spool_dir=tmp_path / "spool", heartbeat_interval_s=0.5, flush_interval_s=1,
                targets=[TargetConfig(type="redis", name="cache", address=services.redis.url, role="primary",
                                      interval_s=1)],
            )  # fmt: skip
            agent = Agent(config, load_or_register(config, token))
            agent.start()
            until("the agent's heartbeat to register the cache",
                  lambda: httpx.get(f"{urls[1]}/api/v1/services", headers=admin).json(), 15)  # fmt: skip

            client = redis.Redis.from_url(services.redis.url)
            ns = f"ha-{uuid.uuid4().hex[:8]}"
            cache = Cache([(RedisLayer(client), 300)], namespace=ns, redis=client)
            created, killed_at, took_over_at = [], None, None
            for n in range(12):
                cache.set(f"ha:{n}", "stale")
                action = httpx.post(
                    f"{urls[1]}/api/v1/actions", headers=admin,
                    json={"kind": "cache.invalidate", "target": "cache",
                          "params": {"keys": [f"ha:{n}"], "namespace": ns},
                          "idempotency_key": f"{ns}-{n}"},
                ).json()  # fmt: skip
                created.append(action["id"])
                if n == 4:
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                    killed_at = time.monotonic()
                if killed_at and took_over_at is None:
                    took_over_at = _took_over(urls[1], admin)
                time.sleep(0.3)  # pacing: actions keep coming before, during and after the takeover
            if took_over_at is None:
                took_over_at = until(
                    "the follower to take over", lambda: _took_over(urls[1], admin), 4 * LEASE_S, 0.05
                )
            takeover = took_over_at - killed_at
            print(f"takeover {takeover:.2f} s after kill -9 (lease {LEASE_S:g} s)")
            assert takeover < 2 * LEASE_S, f"takeover took {takeover:.2f} s"

            def states() -> list[str]:
                return [
                    httpx.get(f"{urls[1]}/api/v1/actions/{a}", headers=admin).json()["state"] for a in created
                ]

            until("every plan to succeed", lambda: set(states()) == {"succeeded"}, 30, 0.3)
            for action_id in created:
                detail = httpx.get(f"{urls[1]}/api/v1/actions/{action_id}", headers=admin).json()
                assert len(detail["children"]) == 1, detail  # one flush per plan, whoever led
                child = httpx.get(
                    f"{urls[1]}/api/v1/actions/{detail['children'][0]['id']}", headers=admin
                ).json()
                moves = [a["to_state"] for a in child["audit"]]
                assert moves.count("dispatched") == 1, moves
                assert child["state"] == "succeeded"
            assert [cache.get(f"ha:{n}") for n in range(12)] == [None] * 12
            cache.close()
            lease = _leader(urls[1], admin)["lease"]
            assert lease["epoch"] == 2 and lease["holder"].endswith(f":{second.pid}")
        finally:
            if agent is not None:
                agent.interrupt()
                agent.stop()
            for proc in (first, second):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=20)
