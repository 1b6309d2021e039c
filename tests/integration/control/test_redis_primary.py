"""The client helper's reconnect paths against real Redis servers. The resolver's
answer is set by the test (the failover test covers the real catalog); what is under
test is that every socket redis-py opens goes to the primary named at that moment."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time

import httpx

from controlplane.redis_primary import PrimaryResolver, primary_redis
from tests.support.processes import free_port
from tests.support.redis_topology import RedisNode, redis_topology
from tests.support.serve import migrate, start_serve
from tests.support.timing import until


class SetByTest(PrimaryResolver):
    """A resolver whose catalog answer the test moves by hand."""

    def __init__(self, primary: tuple[str, int]) -> None:
        self.current: tuple[str, int] | None = primary
        super().__init__("http://127.0.0.1:9", "unused", "redis", watch=False)

    def _fetch(self, index: int | None, wait_s: float) -> tuple[tuple[str, int] | None, int]:
        return self.current, 1


def _blocked(node: RedisNode) -> bool:
    """Whether a client waits in a blocking command on ``node``."""
    return node.client().info("clients")["blocked_clients"] >= 1


def test_a_command_cut_mid_flight_retries_on_the_new_primary():
    # The primary dies while a command waits on it: redis-py reconnects from inside the
    # command's retry (send_packed_command), which must also ask the resolver.
    with redis_topology(replicas=0) as old, redis_topology(replicas=0) as new:
        resolver = SetByTest(("127.0.0.1", old.primary.port))
        client = primary_redis(resolver, retries=8)
        client.set("k", "before")

        def fail_over() -> None:
            until("the BLPOP to block on the old primary", lambda: _blocked(old.primary))
            old.primary.kill()
            time.sleep(1.0)  # a second of "connection refused" before the catalog moves
            resolver.current = ("127.0.0.1", new.primary.port)

        threading.Thread(target=fail_over, daemon=True).start()
        assert client.blpop(["queue"], timeout=3) is None  # no exception reaches the caller
        client.set("k", "after")
        assert new.primary.client().get("k") == b"after"


def test_a_command_waiting_on_a_primary_the_catalog_moves_away_from_follows_it():
    # The old primary is alive (demoted, say) while a command waits on it: the move wakes
    # the command from the watcher's thread, and its retry runs on the new primary. Closing
    # the socket from that thread instead made the waiting read fail with "I/O operation
    # on closed file", which no retry catches (seen in the failover test).
    with redis_topology(replicas=0) as old, redis_topology(replicas=0) as new:
        resolver = SetByTest(("127.0.0.1", old.primary.port))
        client = primary_redis(resolver, retries=8)
        idle = primary_redis(resolver, retries=8)
        idle.set("k", "before")  # a pooled connection to the old primary, idle at the move

        def move() -> None:
            until("the BLPOP to block on the old primary", lambda: _blocked(old.primary))
            resolver.current = ("127.0.0.1", new.primary.port)
            resolver.primary(refresh=True)  # what the watcher does when the catalog moves
            until("the BLPOP's retry to block on the new primary", lambda: _blocked(new.primary))
            new.primary.client().rpush("queue", "on-the-new-primary")

        threading.Thread(target=move, daemon=True).start()
        assert client.blpop(["queue"], timeout=5) == (b"queue", b"on-the-new-primary")
        idle.set("k", "after")
        assert new.primary.client().get("k") == b"after" and old.primary.client().get("k") == b"before"


def test_an_idle_pooled_connection_to_a_dead_primary_is_replaced():
    with redis_topology(replicas=0) as old, redis_topology(replicas=0) as new:
        resolver = SetByTest(("127.0.0.1", old.primary.port))
        client = primary_redis(resolver, retries=8)
        client.set("k", "before")
        old.primary.kill()
        resolver.current = None  # for a moment the catalog names no primary
        threading.Timer(0.5, lambda: setattr(resolver, "current", ("127.0.0.1", new.primary.port))).start()
        client.set("k", "after")
        assert new.primary.client().get("k") == b"after"


def test_a_blocking_query_is_answered_when_the_server_stops(tmp_path):
    # uvicorn cancels what is still running after its graceful timeout, which hands the
    # client a 500; a stopping server answers its waiters first, with the current state.
    port, token = free_port(), secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {"COREPLANE_DATABASE_URL": f"sqlite:///{tmp_path}/store.db", "COREPLANE_ADMIN_TOKEN": token,
            "COREPLANE_SERVER__PORT": str(port)}  # fmt: skip
    migrate(env)
    serve = start_serve(env, tmp_path / "serve.log")
    url, admin = f"http://127.0.0.1:{port}/api/v1", {"Authorization": f"Bearer {token}"}
    try:
        instance = {"service": "cache", "kind": "redis", "address": "127.0.0.1:1", "role": "primary"}
        assert httpx.post(f"{url}/services/register", json=[instance], headers=admin).status_code == 202
        index = httpx.get(f"{url}/services/cache", headers=admin).headers["X-Coreplane-Index"]
        answers: list[httpx.Response] = []
        poll = threading.Thread(target=lambda: answers.append(httpx.get(
            f"{url}/services/cache", params={"index": index, "wait": 60}, headers=admin, timeout=30)))  # fmt: skip
        poll.start()
        # Nothing to poll for: a query that has not answered after a second is what "blocks" means.
        time.sleep(1.0)
        assert not answers, "the blocking query should still be waiting"
        stopped_at = time.monotonic()
        serve.terminate()
        poll.join(timeout=10)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert answers[0].json()["name"] == "cache"
        assert time.monotonic() - stopped_at < 2.0, "answered at once, not after the graceful timeout"
        # uvicorn re-raises the SIGTERM it handled once it has shut down.
        assert serve.wait(timeout=15) == -signal.SIGTERM
        assert "Exception in ASGI application" not in (tmp_path / "serve.log").read_text()
    finally:
        serve.kill()
        serve.wait()
