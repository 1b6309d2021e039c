"""A consumer process for the kill tests: consumes QUEUE with controlplane.messaging's
Consumer (broker and definition from COREPLANE_MESSAGING__*) and appends one line per
processed message to OUT: ``<message_id> <redelivered 0|1>``, flushed and fsynced before
the handler returns (so before the ack).

    python -m tests.integration.messaging.consume_worker QUEUE OUT [--hold MARKER]

``--hold MARKER``: on its first message, write the message id to MARKER and hang there, the
message unacked, until killed (a consumer dying mid-message)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from controlplane.messaging.connection import runtime
from controlplane.messaging.consumer import Consumer, Delivery
from controlplane.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("queue")
    parser.add_argument("out", type=Path)
    parser.add_argument("--hold", type=Path)
    parser.add_argument("--prefetch", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    found = runtime(load_settings())
    assert found is not None, "set COREPLANE_MESSAGING__URL"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def handle(delivery: Delivery) -> None:
        if args.hold is not None and not args.hold.exists():
            args.hold.write_text(f"{delivery.message_id}\n")
            threading.Event().wait()  # held until SIGKILL: the kill is the test
        with args.out.open("a") as out:
            out.write(f"{delivery.message_id} {int(delivery.redelivered)}\n")
            out.flush()
            os.fsync(out.fileno())

    Consumer(found, args.queue, handle, prefetch=args.prefetch).run(stop)


if __name__ == "__main__":
    main()
