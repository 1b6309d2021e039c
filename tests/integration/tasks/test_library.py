"""The task library on real RabbitMQ, Redis and `coreplane worker` processes: priorities,
routes, retries with backoff, time limits, dead letters, a worker killed mid-task."""

from __future__ import annotations

import secrets
import signal
import subprocess
from itertools import pairwise

import psutil
import redis
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from tests.support.processes import coreplane_bin
from tests.support.tasks import (
    JOBS,
    celery_app,
    queue_info,
    task_broker,
    task_settings,
    task_worker,
    tasks_env,
)
from tests.support.timing import until

PARTA = "tests.integration.tasks.jobs_parta"
DEAD = "coreplane.dead"


def _redis(services) -> redis.Redis:
    return redis.Redis.from_url(services.redis.url, decode_responses=True)


def _key() -> str:
    return f"test:tasks:{secrets.token_hex(4)}"


def _queue(app, name: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, exact (a passive declare, not the
    management API's periodic statistics)."""
    with app.connection_for_write() as conn:
        found = conn.default_channel.queue_declare(name, passive=True)
        return found.message_count, found.consumer_count


def _delays(services, key: str) -> list[float]:
    starts = [float(at) for at in _redis(services).lrange(f"{key}:at", 0, -1)]
    return [later - earlier for earlier, later in pairwise(starts)]


def test_a_task_that_fails_for_good_is_dead_lettered(services, tmp_path):
    with task_broker(services) as broker:
        settings = task_settings(services, broker)
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "worker.log"):
            assert app.send_task("jobs.add", (2, 3)).get(timeout=30) == 5
            failed = app.send_task("jobs.fail", ("for good",))
            until("the failure", lambda: failed.state == "FAILURE", 30, 0.1)
        dead = until(
            "the dead letter",
            lambda: queue_info(services, broker, "coreplane.dead")["messages"] or None,
            10,
            0.2,
        )
        assert dead == 1


def test_priorities_reorder_a_200_task_backlog(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        settings = task_settings(services, broker, queues={"celery": 10})
        app = celery_app(settings)
        sent = [((i * 7) % 10, i) for i in range(200)]  # priorities 0..9, well mixed
        for priority, i in sent:
            app.send_task("jobs.record", (key, f"{priority}:{i}"), priority=priority)
        assert _queue(app, "celery") == (200, 0)  # the whole backlog waits for a worker
        with task_worker(settings, "--queues=celery", concurrency=1, log=tmp_path / "w.log"):
            until("the backlog to run", lambda: _redis(services).llen(key) == 200, 90, 0.2)
        ran = [tuple(int(part) for part in v.split(":")) for v in _redis(services).lrange(key, 0, -1)]
        # Higher first; within one priority, in the order sent.
        assert ran == sorted(sent, key=lambda pi: (-pi[0], pi[1]))
        assert ran != sent


def test_a_default_priority_by_task_name_and_a_calls_own_priority_wins(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        settings = task_settings(
            services, broker, modules=[JOBS, PARTA], priorities={"parta.urgent": 6}, default_priority=2
        )
        app = celery_app(settings)
        app.send_task("jobs.record", (key, "a"))  # settings' default priority, 2
        app.send_task("parta.urgent", (key, "b"))  # its own default, 6
        app.send_task("parta.urgent", (key, "c"), priority=1)  # the call's, over its default
        app.send_task("jobs.record", (key, "d"), priority=9)
        app.send_task("jobs.record", (key, "e"), priority=0)  # 0 is a priority, not "none"
        with task_worker(settings, concurrency=1, log=tmp_path / "w.log"):
            until("five records", lambda: _redis(services).llen(key) == 5, 30, 0.1)
        assert _redis(services).lrange(key, 0, -1) == ["d", "b", "a", "c", "e"]


def test_routes_send_tasks_to_their_queue_and_a_worker_consumes_only_its_queues(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        routes = {"jobs.*": "mail", "jobs.add": "reports", "parta.*": "reports", "parta.u*": "mail"}
        settings = task_settings(
            services,
            broker,
            modules=[JOBS, PARTA],
            queues={"celery": 10, "mail": 5, "reports": 5},
            routes=routes,
        )
        app = celery_app(settings)
        recorded = app.send_task("jobs.record", (key, "mail"))  # glob jobs.*
        app.send_task("jobs.add", (1, 2))  # the exact route beats the earlier glob
        app.send_task("parta.urgent", (key, "reports"))  # the first glob that matches
        app.send_task("coreplane.ping")  # no route: the default queue
        with task_worker(settings, "--queues=mail", log=tmp_path / "w.log"):
            assert recorded.get(timeout=30) == "mail"
            assert _queue(app, "mail") == (0, 1)
            assert _queue(app, "reports") == (2, 0)
            assert _queue(app, "celery") == (1, 0)
        assert _redis(services).lrange(key, 0, -1) == ["mail"]


def test_a_worker_refuses_an_undeclared_queue(services):
    settings = task_settings(services, services.rabbitmq.url, queues={"celery": 10, "mail": 5})
    done = subprocess.run(
        [coreplane_bin(), "worker", "--queues=mail,nope"],
        env=tasks_env(settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "nope" in done.stderr and "celery, mail" in done.stderr


def test_a_flaky_task_retries_with_exponential_backoff_and_its_own_overrides(services, tmp_path):
    """Settings: 0.3 s, 1 retry, no jitter. jobs.flaky overrides 0.5 s and 4 retries;
    parta.flaky_plain keeps the settings'."""
    key, plain = _key(), _key()
    with task_broker(services) as broker:
        retry = {"backoff_s": 0.3, "max_retries": 1, "jitter": False}
        settings = task_settings(services, broker, modules=[JOBS, PARTA], retry=retry)
        app = celery_app(settings)
        with task_worker(settings, concurrency=2, log=tmp_path / "w.log"):
            flaky = app.send_task("jobs.flaky", (key, 2))
            failing = app.send_task("parta.flaky_plain", (plain, 2))
            assert flaky.get(timeout=30) == 3
            until("the plain task to fail", lambda: failing.state == "FAILURE", 30, 0.1)
        # Attempt n+1 starts backoff * 2**n after attempt n, and not much later.
        delays = _delays(services, key)
        assert len(delays) == 2
        for delay, wanted in zip(delays, [0.5, 1.0], strict=True):
            assert wanted <= delay < wanted + 0.75, delays
        plain_delays = _delays(services, plain)
        assert len(plain_delays) == 1  # settings' max_retries: one retry, then it fails for good
        assert 0.3 <= plain_delays[0] < 0.3 + 0.75, plain_delays
        assert isinstance(failing.result, ConnectionError)


def test_jittered_retry_delays_stay_under_the_exponential_ceiling(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        settings = task_settings(services, broker, retry={"jitter": True})
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log"):
            assert app.send_task("jobs.flaky", (key, 4)).get(timeout=60) == 5
        delays = _delays(services, key)
        ceilings = [0.5 * 2**n for n in range(4)]
        assert len(delays) == 4
        for delay, ceiling in zip(delays, ceilings, strict=True):
            assert delay <= ceiling + 0.25, (delays, ceilings)
        # Full jitter draws from [0, ceiling]: four draws all in the top tenth is a 1e-4 chance.
        assert any(d < 0.9 * c for d, c in zip(delays, ceilings, strict=True)), delays


def test_a_soft_time_limit_raises_inside_the_task_which_fails_without_retry(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTA])
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log"):
            result = app.send_task("parta.soft", (key,))
            until("the failure", lambda: result.state == "FAILURE", 30, 0.1)
            until("the dead letter", lambda: _queue(app, DEAD)[0] == 1, 10, 0.1)
        assert isinstance(result.result, SoftTimeLimitExceeded)
        assert _redis(services).get(f"{key}:soft") == "1"  # the task saw the exception
        assert _redis(services).get(f"{key}:attempts") == "1"  # and was not retried


def test_a_hard_time_limit_kills_the_tasks_process_and_dead_letters_it(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTA])
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "w.log") as worker:
            result = app.send_task("parta.hard", (key,))
            pid = int(until("the task to start", lambda: _redis(services).get(f"{key}:pid"), 30, 0.05))
            assert pid in {child.pid for child in psutil.Process(worker.pid).children()}
            until("the failure", lambda: result.state == "FAILURE", 30, 0.1)
            until("the task's process to end", lambda: not psutil.pid_exists(pid), 10, 0.05)
            # Dead-lettered once, not requeued to be killed again and again.
            until("the dead letter", lambda: _queue(app, DEAD)[0] == 1, 10, 0.1)
            assert _redis(services).get(f"{key}:attempts") == "1"
            assert app.send_task("jobs.add", (1, 1)).get(timeout=30) == 2  # the pool has a new process
        assert isinstance(result.result, TimeLimitExceeded)
        assert _redis(services).get(f"{key}:done") is None


def test_a_worker_killed_mid_task_loses_nothing(services, tmp_path):
    key = _key()
    with task_broker(services) as broker:
        settings = task_settings(services, broker, modules=[JOBS, PARTA])
        app = celery_app(settings)
        with task_worker(settings, log=tmp_path / "first.log") as first:
            result = app.send_task("parta.slow", (key, 3))
            until("the task to start", lambda: _redis(services).get(f"{key}:attempts") == "1", 30, 0.05)
            worker = psutil.Process(first.pid)
            everyone = [worker, *worker.children(recursive=True)]
            for process in everyone:  # the whole worker, main process and pool, at once
                process.send_signal(signal.SIGKILL)
            _gone, alive = psutil.wait_procs(everyone, timeout=10)
            assert not alive and worker.returncode == -signal.SIGKILL  # type: ignore[attr-defined]
        assert _redis(services).get(f"{key}:done") is None
        with task_worker(settings, log=tmp_path / "second.log"):
            assert result.get(timeout=60) == 2  # the second attempt, on the new worker
        assert _redis(services).get(f"{key}:done") == "1"
