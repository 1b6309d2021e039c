"""The dead-letter queue on real RabbitMQ, Redis and `coreplane worker` processes: what
lands there, listing it, replaying and discarding by id, name and count."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import amqp
import pytest
import redis

from controlplane.errors import Rejected, TooLarge
from controlplane.tasks import dead, topology
from tests.support.tasks import JOBS, celery_app, task_broker, task_settings, task_worker
from tests.support.timing import until

PARTA = "tests.integration.tasks.jobs_parta"


def _redis(services) -> redis.Redis:
    return redis.Redis.from_url(services.redis.url, decode_responses=True)


def _dead_ids(app, settings) -> list[str]:
    return [row["task_id"] for row in dead.list_dead(app, settings.tasks, limit=1000)]


def _succeeds(app, task_id: str) -> object:
    """The result of a replayed task once it has run again (until then the backend holds
    the failure it died of; AsyncResult would keep that one, it caches a finished state)."""
    meta = until(
        f"{task_id} to succeed",
        lambda: (found := app.backend.get_task_meta(task_id, cache=False))["status"] == "SUCCESS" and found,
        30,
        0.1,
    )
    return meta["result"]


def _dies(app, settings, name: str, args: tuple, **options) -> str:
    """Send a task that fails for good; its id once it is in the dead letters."""
    task_id = app.send_task(name, args, **options).id
    until(f"{name} in the dead letters", lambda: task_id in _dead_ids(app, settings), 30, 0.1)
    return task_id


def test_a_task_failing_always_is_dead_lettered_with_its_traceback_and_listed(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log"):
            task_id = _dies(app, settings, "jobs.fail", ("for good",))
        result = app.AsyncResult(task_id)
        assert result.state == "FAILURE"
        assert "ValueError: for good" in result.traceback and "jobs.py" in result.traceback
        [row] = dead.list_dead(app, settings.tasks)
        assert row["task_id"] == task_id and row["name"] == "jobs.fail"
        assert row["args"] == "('for good',)"
        assert (row["queue"], row["reason"]) == ("celery", "rejected")
        assert row["retries"] == 1  # jobs.fail's max_retries: the last attempt died
        assert row["exception"] == "ValueError: for good"
        assert datetime.now(UTC) - row["failed_at"] < timedelta(minutes=1)
        assert _dead_ids(app, settings) == [task_id]  # a look leaves it there


def test_a_replay_runs_the_task_again_with_the_same_id_and_priority(services, tmp_path):
    key = f"test:tasks:{secrets.token_hex(4)}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTA])
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log"):
            # Fails its first attempt and its one retry (max_retries=1), then would succeed.
            task_id = _dies(app, settings, "parta.flaky_dead", (key, 2), priority=7)
            assert app.AsyncResult(task_id).state == "FAILURE"
            assert dead.replay(app, settings.tasks, task_ids={task_id}) == [task_id]
            assert _succeeds(app, task_id) == 3
        assert _redis(services).lrange(f"{key}:runs", 0, -1) == ["1:7", "2:7", "3:7"]
        assert _dead_ids(app, settings) == []


def test_replay_and_discard_take_only_what_their_filters_match_and_leave_the_rest_in_order(
    services, tmp_path
):
    key = f"test:tasks:{secrets.token_hex(4)}"
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTA])
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log"):
            ids = [
                _dies(app, settings, "parta.flaky_dead", (f"{key}:{i}", 2))
                if i % 2 == 0
                else _dies(app, settings, "jobs.fail", (f"fail {i}",))
                for i in range(6)
            ]
            assert _dead_ids(app, settings) == ids
            assert dead.replay(app, settings.tasks, name="parta.flaky_dead", limit=1) == [ids[0]]
            assert dead.replay(app, settings.tasks, task_ids={ids[4], ids[3]}) == [ids[3], ids[4]]
            assert _succeeds(app, ids[0]) == 3
            assert _succeeds(app, ids[4]) == 3
            # jobs.fail comes back with its retries spent: it fails for good at once and
            # joins the end of the queue; the others kept their places.
            until(
                "the replayed failure back",
                lambda: _dead_ids(app, settings) == [ids[1], ids[2], ids[5], ids[3]],
            )
            assert dead.discard(app, settings.tasks, name="jobs.fail", limit=2) == [ids[1], ids[5]]
            assert dead.discard(app, settings.tasks, task_ids={ids[3]}) == [ids[3]]
            assert _dead_ids(app, settings) == [ids[2]]
            assert app.AsyncResult(ids[2]).state == "FAILURE"  # never replayed


def test_a_dead_task_whose_queue_is_gone_stays(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(
            services, broker, queues={"celery": 10, "mail": 5}, routes={"jobs.fail": "mail"}
        )
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log"):
            task_id = _dies(app, settings, "jobs.fail", ("mail",))
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete("mail")
        assert dead.replay(app, settings.tasks) == []
        assert _dead_ids(app, settings) == [task_id]


def test_limits_and_filters_are_checked(services):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with pytest.raises(Rejected) as refused:
            dead.list_dead(app, settings.tasks, limit=0)
        assert refused.value.errors[0]["field"] == "limit"
        with pytest.raises(TooLarge) as refused:
            dead.replay(app, settings.tasks, task_ids={str(i) for i in range(dead.MAX_TASK_IDS + 1)})
        assert refused.value.errors[0]["field"] == "task_ids"
        assert dead.discard(app, settings.tasks, task_ids=set()) == []  # an empty set matches nothing


def test_a_pass_reads_only_what_the_queue_held_when_it_began(services):
    """A replayed task can fail again at once and be dead-lettered behind the messages the
    same pass is still scanning: the pass must not reach it (it would replay it twice)."""
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        queue = settings.tasks.dead_letter_queue
        topology.declare_dead_letters(app, settings.tasks)
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for body in (b"first", b"second"):
                channel.basic_publish(amqp.Message(body), exchange="", routing_key=queue)
            until("two dead letters", lambda: channel.queue_declare(queue, passive=True).message_count == 2)
        seen = []
        with dead._held(app, settings.tasks) as letters:
            for message in letters:
                seen.append(message.body)
                if len(seen) == 1:  # arrives while the pass runs, as a re-dead-lettered task does
                    letters.channel.basic_publish(amqp.Message(b"late"), exchange="", routing_key=queue)
        assert seen == [b"first", b"second"]
        with dead._held(app, settings.tasks) as letters:  # nothing taken: all three are there
            assert [m.body for m in letters] == [b"first", b"second", b"late"]
