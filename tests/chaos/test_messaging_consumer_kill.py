"""A consumer killed (SIGKILL) while its handler holds a message: the broker redelivers that
message, flagged redelivered, to the next consumer, which processes it; every message is
processed exactly once after the kill and none is lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support.messaging import declare_definition, depth, settings_for
from tests.support.messaging_consume import publish_raw
from tests.support.processes import coreplane_env, spawn, stop
from tests.support.rabbitmq import queue_info, rabbit_vhost
from tests.support.services import ROOT
from tests.support.timing import until

MESSAGES = 20
DEFINITION = {"queues": [{"name": "work", "type": "quorum"}]}


def worker(url: str, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = coreplane_env(messaging__url=url, messaging__definition=json.dumps(DEFINITION))
    argv = [sys.executable, "-m", "tests.integration.messaging.consume_worker", "work", str(out), *extra]
    return spawn(argv, log, env | {"PYTHONPATH": str(ROOT)})


def lines(path: Path) -> list[tuple[str, bool]]:
    if not path.exists():
        return []
    return [(i, flag == "1") for i, flag in (line.split() for line in path.read_text().splitlines())]


def test_a_consumer_killed_mid_message_loses_nothing_and_processes_it_once(services, tmp_path):
    with rabbit_vhost(services) as url:
        declare_definition(settings_for(services, url, DEFINITION))
        ids = [publish_raw(url, "", "work", {"n": n}, message_id=f"m{n:03d}") for n in range(MESSAGES)]
        out, marker = tmp_path / "processed.txt", tmp_path / "holding.txt"
        doomed = worker(url, out, tmp_path / "doomed.log", "--hold", str(marker))
        try:
            held = until("the first consumer to hold a message", lambda: marker.exists() and marker.read_text().strip(),
                         timeout_s=30, logs=lambda: (tmp_path / "doomed.log").read_text())  # fmt: skip
            doomed.send_signal(signal.SIGKILL)  # a crash mid-handler: no ack, no goodbye
            doomed.wait(10)
        finally:
            stop(doomed)
        assert held == ids[0]
        assert lines(out) == [], "the killed consumer processed something before its kill"
        successor = worker(url, out, tmp_path / "successor.log")
        try:
            until(f"the next consumer to process {MESSAGES} messages", lambda: len(lines(out)) >= MESSAGES,
                  timeout_s=30, logs=lambda: (tmp_path / "successor.log").read_text())  # fmt: skip
            until("the queue to be empty with nothing unacked", lambda: depth(url, "work") == 0
                  and queue_info(services, url, "work").get("messages_unacknowledged") == 0,
                  timeout_s=20, every_s=0.5)  # fmt: skip
        finally:
            stop(successor)
        processed = lines(out)
        counts = Counter(i for i, _ in processed)
        redelivered = [i for i, flag in processed if flag]
        assert set(counts) == set(ids), f"lost: {sorted(set(ids) - set(counts))}"
        duplicates = {i: n for i, n in counts.items() if n > 1}
        assert not duplicates, f"processed more than once: {duplicates}"
        assert redelivered == [held], f"redelivered: {redelivered} (the held one was {held})"
        assert len(processed) == MESSAGES
        assert depth(url, "work.dlq") == 0
