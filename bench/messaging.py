"""Messaging: controlplane.messaging (Publisher + Consumer) against raw kombu with publisher
confirms, on the same RabbitMQ, in the same run, each side on a virtual host of its own with
the same durable classic queue; persistent messages, manual acks, prefetch PREFETCH.

- mq_latency_p99_ms: publish -> handler, at a steady RATE per second (a rate both sides keep
  up with: latency, not a backlog). The body carries time.perf_counter() at the publish
  call; the consumer, a thread of the same process, takes the difference. The sides take
  turns in BLOCKS blocks so load from elsewhere on the machine falls on both alike.
- mq_throughput_ratio: COUNT persistent 1 KB messages published one by one (each confirmed)
  by one thread while one consumer takes them: messages per second from the first publish
  to the last one handled. ROUNDS rounds, the sides in turn (who goes first alternating);
  each side's best round counts: load from elsewhere on the machine only ever slows a round.
- mq_loss_after_broker_kill: a private broker (tests/support/rabbitmq_private.py), a durable
  quorum queue; one thread publishes numbered messages through the Publisher, the broker is
  kill -9'd mid-stream and restarted, then the queue is drained: confirmed messages that are
  not there are lost. No baseline: the goal is 0.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from kombu import Connection
from kombu import Consumer as KombuConsumer
from kombu import Queue as KombuQueue

from controlplane.errors import Unavailable
from controlplane.messaging.connection import MessagingRuntime
from controlplane.messaging.consumer import Consumer, Delivery
from controlplane.messaging.publisher import BrokerRefused, Publisher
from controlplane.settings import Settings
from tests.support.messaging import declare_definition, depth, settings_for, take
from tests.support.rabbitmq import rabbit_vhost
from tests.support.results import Result
from tests.support.services import require
from tests.support.timing import until

RATE = float(os.environ.get("BENCH_MQ_RATE", 200))
LATENCY_S = float(os.environ.get("BENCH_MQ_LATENCY_S", 10))
BLOCKS = int(os.environ.get("BENCH_MQ_BLOCKS", 4))
COUNT = int(os.environ.get("BENCH_MQ_COUNT", 4000))
ROUNDS = int(os.environ.get("BENCH_MQ_ROUNDS", 3))
LOSS_COUNT = int(os.environ.get("BENCH_MQ_LOSS_COUNT", 4000))
PREFETCH = 50
QUEUE = "bench"
DEFINITION = {"queues": [{"name": QUEUE, "dead_letter": False}]}
PAD = "x" * 1000  # with the JSON around it, a body of about 1 KB
LATENCY_GOAL_MS, LATENCY_RATIO_GOAL, THROUGHPUT_GOAL = 20.0, 1.1, 0.9
ROUND_TIMEOUT_S = 120.0


@dataclass
class Side:
    """One side of the comparison: how it publishes and how it consumes into ``on_body``."""

    label: str
    url: str
    publish: Callable[[dict[str, Any]], object]
    consume: Callable[[Callable[[dict[str, Any]], None], threading.Event], None]
    close: Callable[[], None]


def ours(runtime: MessagingRuntime) -> Side:
    publisher = Publisher(runtime)

    def consume(on_body: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        def handler(delivery: Delivery) -> None:
            on_body(delivery.body)

        Consumer(runtime, QUEUE, handler, prefetch=PREFETCH).run(stop)

    return Side(
        "coreplane", runtime.url, lambda body: publisher.publish("", QUEUE, body), consume, publisher.close
    )


def raw(url: str) -> Side:
    """kombu as its documentation shows it: a confirmed connection, a Producer, a Consumer."""
    connection = Connection(url, transport_options={"confirm_publish": True})
    producer = connection.Producer(serializer="json")

    def publish(body: dict[str, Any]) -> None:
        producer.publish(body, exchange="", routing_key=QUEUE, delivery_mode=2)

    def consume(on_body: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        def on_message(body: Any, message: Any) -> None:
            on_body(body)
            message.ack()

        with Connection(url) as conn:
            queue = KombuQueue(QUEUE, no_declare=True)
            with KombuConsumer(
                conn, queues=[queue], callbacks=[on_message], prefetch_count=PREFETCH, accept=["json"]
            ):
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        continue

    return Side("kombu", url, publish, consume, connection.release)


class Receiver:
    """A side's consumer on a thread, counting what it handled (and the latencies)."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.latencies_ms: list[float] = []
        self.handled = 0
        self.last_at = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=side.consume, args=(self._on_body, self.stop), daemon=True)
        self.thread.start()

    def _on_body(self, body: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.latencies_ms.append((now - body["sent"]) * 1000)
        self.handled += 1
        self.last_at = now

    def reached(self, n: int) -> Callable[[], bool]:
        return lambda: self.handled >= n

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _sides(settings: Settings, stack: ExitStack) -> list[Side]:
    ours_url = stack.enter_context(rabbit_vhost(settings))
    raw_url = stack.enter_context(rabbit_vhost(settings))
    runtime = declare_definition(settings_for(settings, ours_url, DEFINITION))
    declare_definition(settings_for(settings, raw_url, DEFINITION))
    sides = [ours(runtime), raw(raw_url)]
    for side in sides:
        stack.callback(side.close)
    return sides


def _warm(side: Side, receiver: Receiver, n: int = 50) -> None:
    for _ in range(n):
        side.publish({"sent": time.perf_counter()})
    until(f"{side.label}'s warm-up to be handled", receiver.reached(n), 30)
    receiver.latencies_ms.clear()
    receiver.handled = 0


def latency(settings: Settings, rate: float = RATE, seconds: float = LATENCY_S,
            blocks: int = BLOCKS) -> dict[str, list[float]]:  # fmt: skip
    """Per side, ms from the publish call to the handler, ``rate`` per second for
    ``seconds`` in all, in ``blocks`` alternating blocks."""
    found: dict[str, list[float]] = {}
    with ExitStack() as stack:
        sides = _sides(settings, stack)
        receivers = {side.label: Receiver(side) for side in sides}
        for receiver in receivers.values():
            stack.callback(receiver.close)
            _warm(receiver.side, receiver)
        per_block = max(1, round(rate * seconds / blocks))
        for _ in range(blocks):
            for side in sides:
                receiver = receivers[side.label]
                expected = receiver.handled + per_block
                started = time.perf_counter()
                for n in range(per_block):
                    # A steady rate: each message at its own due time, not as fast as possible.
                    due = started + n / rate
                    while (left := due - time.perf_counter()) > 0:
                        time.sleep(left)
                    side.publish({"sent": time.perf_counter()})
                until(f"{side.label}'s block to be handled", receiver.reached(expected), 30)
        for label, receiver in receivers.items():
            found[label] = list(receiver.latencies_ms)
    return found


def throughput(settings: Settings, count: int = COUNT, rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Per side, messages per second in each round: ``count`` 1 KB messages published and
    handled, from the first publish to the last one handled."""
    found: dict[str, list[float]] = {}
    with ExitStack() as stack:
        sides = _sides(settings, stack)
        for n in range(rounds):
            # Who goes first alternates: a disk or a neighbour busy for a while hits both.
            for side in sides if n % 2 == 0 else sides[::-1]:
                receiver = Receiver(side)
                try:
                    _warm(side, receiver)
                    started = time.perf_counter()
                    for _ in range(count):
                        side.publish({"sent": time.perf_counter(), "pad": PAD})
                    until(
                        f"{side.label}'s {count} messages to be handled",
                        receiver.reached(count),
                        ROUND_TIMEOUT_S,
                    )
                    found.setdefault(side.label, []).append(count / (receiver.last_at - started))
                finally:
                    receiver.close()
    return found


@dataclass
class Loss:
    confirmed: int
    found: int  # distinct confirmed messages in the queue after the restart
    duplicates: int
    unconfirmed_found: int  # published but not confirmed when the broker died, there anyway

    @property
    def lost(self) -> int:
        return self.confirmed - self.found


def loss_after_kill(settings: Settings, count: int = LOSS_COUNT, kill_after: int | None = None) -> Loss:
    """Numbered messages into a durable quorum queue of a private broker, kill -9 after
    ``kill_after`` were confirmed (half of ``count`` by default), restart, drain, compare."""
    from tests.support.rabbitmq_private import private_rabbit

    kill_after = count // 2 if kill_after is None else kill_after
    confirmed: list[int] = []
    tried = [0]
    with private_rabbit() as rabbit:
        broker = settings.model_copy(update={"rabbitmq": settings.rabbitmq.model_copy(
            update={"url": rabbit.amqp_url, "management_url": rabbit.management_url})})  # fmt: skip
        durable = {"queues": [{"name": "loss", "type": "quorum", "dead_letter": False}]}
        runtime = declare_definition(settings_for(broker, rabbit.amqp_url, durable, confirm_timeout_s=3.0))
        with Publisher(runtime) as publisher:

            def send() -> None:
                for n in range(count):
                    tried[0] = n + 1
                    try:
                        publisher.publish("", "loss", {"n": n}, message_id=str(n))
                    except (Unavailable, BrokerRefused):
                        return  # the broker is gone: what was not confirmed is not counted
                    confirmed.append(n)

            thread = threading.Thread(target=send, daemon=True)
            thread.start()
            until("messages confirmed before the kill", lambda: len(confirmed) >= kill_after or not thread.is_alive(),
                  120)  # fmt: skip
            rabbit.kill9()
            thread.join(timeout=60)
        rabbit.restart()
        until("the quorum queue to answer", lambda: depth(rabbit.amqp_url, "loss") >= 0, 60, 0.5,
              ignoring=(Exception,))  # fmt: skip
        seen = [json.loads(m.body)["n"] for m in take(rabbit.amqp_url, "loss", limit=count + 10)]
    done = set(confirmed)
    return Loss(
        confirmed=len(done), found=len(done & set(seen)), duplicates=len(seen) - len(set(seen)),
        unconfirmed_found=len(set(seen) - done),
    )  # fmt: skip


def _quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def latency_result(found: dict[str, list[float]], rate: float = RATE, blocks: int = BLOCKS) -> Result:
    mine, theirs = found["coreplane"], found["kombu"]
    p99, raw_p99 = _quantile(mine, 99), _quantile(theirs, 99)
    return Result(
        name="mq_latency_p99_ms", ours=round(p99, 2), baseline=round(raw_p99, 2),
        unit=f"ms p99 publish -> handler, confirms on, persistent, {len(mine)} messages per side at {rate:g}/s "
             f"in {blocks} alternating blocks; p50 coreplane {_quantile(mine, 50):.2f} vs raw kombu "
             f"{_quantile(theirs, 50):.2f} (same broker, one process)",
        goal=f"p99 < {LATENCY_GOAL_MS:g} ms and ratio <= {LATENCY_RATIO_GOAL}",
        met=p99 < LATENCY_GOAL_MS and p99 / raw_p99 <= LATENCY_RATIO_GOAL,
    )  # fmt: skip


def throughput_result(found: dict[str, list[float]], count: int = COUNT) -> Result:
    best, raw_best = max(found["coreplane"]), max(found["kombu"])
    rounds = lambda label: " / ".join(f"{r:,.0f}" for r in found[label])  # noqa: E731
    return Result(
        name="mq_throughput_ratio", ours=round(best, 1), baseline=round(raw_best, 1),
        unit=f"msgs/s published (one thread, each confirmed) and consumed (prefetch {PREFETCH}, manual acks), "
             f"{count:,} persistent 1 KB messages, best of {len(found['coreplane'])} rounds (coreplane "
             f"{rounds('coreplane')}, raw kombu {rounds('kombu')})",
        goal=f"ratio >= {THROUGHPUT_GOAL}", met=best / raw_best >= THROUGHPUT_GOAL,
    )  # fmt: skip


def loss_result(loss: Loss) -> Result:
    return Result(
        name="mq_loss_after_broker_kill", ours=float(loss.lost), baseline=None,
        unit=f"confirmed messages missing after kill -9 and restart of a private broker (durable quorum queue): "
             f"{loss.confirmed:,} confirmed, {loss.found:,} of them found, {loss.duplicates} duplicates, "
             f"{loss.unconfirmed_found} unconfirmed ones found anyway",
        goal="0", met=loss.lost == 0,
    )  # fmt: skip


def run(settings: Settings) -> list[Result]:
    require(settings.rabbitmq.url, "rabbitmq")
    found = latency(settings)
    for label, values in found.items():
        print(f"bench: mq latency {label} p50 {_quantile(values, 50):.2f} ms p99 {_quantile(values, 99):.2f} ms "
              f"max {max(values):.2f} ms", flush=True)  # fmt: skip
    rates = throughput(settings)
    print(f"bench: mq throughput {rates}", flush=True)
    loss = loss_after_kill(settings)
    print(f"bench: mq loss {loss}", flush=True)
    return [latency_result(found), throughput_result(rates), loss_result(loss)]
