"""The task base class's retry policy and time limits, on an app that never connects."""

import random

from celery.exceptions import SoftTimeLimitExceeded

from controlplane.settings import Settings, TaskRetrySettings, TasksSettings
from controlplane.tasks import make_celery
from controlplane.tasks.base import DeadLetteringRequest, backoff_delay


def test_backoff_doubles_from_the_base_up_to_the_cap_without_jitter():
    assert [backoff_delay(n, 0.5, 3.0, False) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_does_not_overflow_on_a_huge_retry_count():
    assert backoff_delay(10_000, 1.0, 600.0, False) == 600.0


def test_full_jitter_draws_between_zero_and_the_ceiling():
    rng = random.Random(14)
    for retries, ceiling in [(0, 1.0), (3, 8.0), (20, 60.0)]:
        draws = [backoff_delay(retries, 1.0, 60.0, True, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in draws)
        # Spread over the whole range, not bunched at the ceiling (a plain delay would be).
        assert min(draws) < 0.1 * ceiling and max(draws) > 0.9 * ceiling
        assert 0.4 * ceiling < sum(draws) / len(draws) < 0.6 * ceiling


def _app(**tasks):  # type: ignore[no-untyped-def]
    settings = Settings(tasks=TasksSettings(broker_url="amqp://nowhere.invalid//", **tasks))
    return make_celery(settings, import_modules=False)


def test_settings_give_every_task_its_policy_and_a_decorator_overrides_any_of_it():
    app = _app(
        retry=TaskRetrySettings(max_retries=7, backoff_s=2.0, backoff_max_s=30.0, jitter=False),
        soft_time_limit_s=50.0,
        time_limit_s=60.0,
    )

    @app.task(shared=False, name="t.plain")
    def plain() -> None: ...

    @app.task(
        shared=False,
        name="t.own",
        max_retries=1,
        backoff_s=0.25,
        jitter=True,
        soft_time_limit=5,
        time_limit=9,
    )
    def own() -> None: ...

    plain_task, own_task = app.tasks["t.plain"], app.tasks["t.own"]
    policy = ("max_retries", "backoff_s", "backoff_max_s", "jitter", "soft_time_limit", "time_limit")
    assert [getattr(plain_task, a) for a in policy] == [7, 2.0, 30.0, False, 50.0, 60.0]
    assert [getattr(own_task, a) for a in policy] == [1, 0.25, 30.0, True, 5, 9]
    assert plain_task.autoretry_for == (Exception,)
    assert SoftTimeLimitExceeded in plain_task.dont_autoretry_for  # out of time: no retry
    assert plain_task.Request is DeadLetteringRequest
    assert plain_task.acks_late and not plain_task.acks_on_failure and plain_task.reject_on_worker_lost


def test_a_soft_limit_not_below_a_tasks_own_hard_limit_is_dropped():
    app = _app(soft_time_limit_s=300.0, time_limit_s=360.0)

    @app.task(shared=False, name="t.quick", time_limit=1)
    def quick() -> None: ...

    @app.task(shared=False, name="t.soft", soft_time_limit=400)
    def soft() -> None: ...

    assert (app.tasks["t.quick"].soft_time_limit, app.tasks["t.quick"].time_limit) == (None, 1)
    assert (app.tasks["t.soft"].soft_time_limit, app.tasks["t.soft"].time_limit) == (None, 360.0)


def test_tasks_have_no_priority_of_their_own_so_the_router_decides():
    app = _app(priorities={"t.prio": 5}, default_priority=3)

    @app.task(shared=False, name="t.prio")
    def plain() -> None: ...

    assert app.tasks["t.prio"].priority is None
    assert app.amqp.router.route({}, "t.prio")["priority"] == 5
    assert app.amqp.router.route({"priority": 0}, "t.prio")["priority"] == 0  # the call's wins
