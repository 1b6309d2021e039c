"""The Redis Sentinel baseline for failover: time to a writable new primary, and acknowledged writes lost."""

from __future__ import annotations

import json
import statistics
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.support.redis_topology import RedisNode, Topology, redis_topology, wait_for_new_primary

TRIAL_TIMEOUT_S = 20.0
WRITE_BEFORE_KILL_S = 1.0
WRITE_AFTER_PROMOTION_S = 0.5
# Errors that mean "the primary is gone or moved": reconnect and retry the same key.
MOVED = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


class TrialTimeout(RuntimeError):
    pass


class Writer(threading.Thread):
    """SETs w:0, w:1, ... as fast as it can, keeping the numbers whose write was acknowledged.

    With ``wait_replica`` a write counts only when `WAIT 1 100` confirms a replica has it.
    """

    def __init__(self, client: redis.Redis, wait_replica: bool) -> None:
        super().__init__(daemon=True)  # never keeps the process alive if a join times out
        self.client, self.wait_replica = client, wait_replica
        self.acked: list[int] = []
        self.last_ack_at = 0.0  # time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            try:
                if self.wait_replica:
                    pipe = self.client.pipeline(transaction=False)
                    _, replicas = pipe.set(f"w:{n}", n).wait(1, 100).execute()
                    acked = replicas >= 1
                else:
                    acked = bool(self.client.set(f"w:{n}", n))
                if acked:
                    self.acked.append(n)
                    self.last_ack_at = time.monotonic()
                n += 1
            except MOVED:
                # The Sentinel-managed pool asks the Sentinels for the primary on the next connect.
                time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


def count_missing(node: RedisNode, numbers: list[int]) -> int:
    """How many of the keys w:<n> are absent on ``node``."""
    missing = 0
    with node.client() as c:
        for i in range(0, len(numbers), 5000):
            values = c.mget([f"w:{n}" for n in numbers[i : i + 5000]])
            missing += sum(v is None for v in values)
    return missing


def trial(
    topology: Topology, client: redis.Redis, wait_replica: bool, who: str = "Sentinel"
) -> tuple[float, int]:
    """Write through ``client``, kill -9 the primary, time the promotion, count lost acknowledged writes."""
    deadline = time.monotonic() + TRIAL_TIMEOUT_S
    writer = Writer(client, wait_replica)
    writer.start()
    try:
        time.sleep(WRITE_BEFORE_KILL_S)
        if not writer.acked:
            raise RuntimeError("the writer got no write acknowledged before the kill")
        old = topology.current_primary()
        if old is None:
            raise RuntimeError("no writable primary before the kill")
        killed_at = time.monotonic()
        old.kill()
        try:
            new, promoted_at = wait_for_new_primary(topology, old, deadline - time.monotonic())
        except TimeoutError:
            raise TrialTimeout(
                f"{who} promoted no replica within {TRIAL_TIMEOUT_S:.0f} s of killing {old}"
            ) from None
        # The client finds the new primary a little after the promotion (redis-py follows the
        # Sentinels, which switch once the failover completes): count losses once it has.
        while writer.last_ack_at < promoted_at:
            if not writer.is_alive():
                raise RuntimeError("the writer thread died (its traceback is above)")
            if time.monotonic() > deadline:
                raise TrialTimeout(
                    f"the writer did not reach the new primary {new} within {TRIAL_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.01)
        time.sleep(WRITE_AFTER_PROMOTION_S)
    finally:
        writer.stop()
        writer.client.close()
    return promoted_at - killed_at, count_missing(new, writer.acked)


def sentinel_client(topology: Topology) -> redis.Redis:
    opts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.2, "retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel([("127.0.0.1", p) for p in topology.sentinel_ports], sentinel_kwargs=opts)
    return sentinel.master_for(topology.master_name, **opts)


def sentinel_trials(trials: int = 10, down_after_ms: int = 1000, wait_trials: int = 3) -> dict:
    """Failover time over ``trials`` plain-writer trials; writes lost with and without `WAIT 1 100`."""
    times, lost_plain, lost_wait = [], [], []
    with redis_topology(replicas=2, sentinels=3, down_after_ms=down_after_ms) as topology:
        for i in range(trials + wait_trials):
            if i:
                topology.reset()
            if i < trials:
                seconds, lost = trial(topology, sentinel_client(topology), wait_replica=False)
                times.append(round(seconds, 3))
                lost_plain.append(lost)
            else:
                lost_wait.append(trial(topology, sentinel_client(topology), wait_replica=True)[1])
    return summary(times, lost_plain, lost_wait)


def summary(times: list[float], lost_plain: list[int], lost_wait: list[int]) -> dict:
    return {
        "times_s": times,
        "median_s": round(statistics.median(times), 3),
        "max_s": max(times),
        "lost_plain": lost_plain,
        "lost_wait": lost_wait,
    }


if __name__ == "__main__":
    print(json.dumps(sentinel_trials(trials=3), indent=2))
