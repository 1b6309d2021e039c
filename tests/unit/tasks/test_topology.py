"""Queues, routes and default priorities from settings, on plain settings objects."""

import pytest

from controlplane.settings import TasksSettings
from controlplane.tasks import topology

ROUTES = {"mail.*": "mail", "mail.urgent": "urgent", "reports.*": "reports", "reports.big*": "mail"}
TASKS = TasksSettings(
    queues={"celery": 10, "mail": 5, "urgent": 10, "reports": 3},
    routes=ROUTES,
    priorities={"mail.urgent": 9, "reports.daily": 1},
    default_priority=2,
)


@pytest.mark.parametrize(
    ("name", "queue"),
    [
        ("mail.send", "mail"),  # a glob
        ("mail.urgent", "urgent"),  # the exact route beats the glob listed before it
        ("reports.bigone", "reports"),  # the first glob that matches, in settings' order
        ("billing.charge", "celery"),  # no route: the first (default) queue
        ("MAIL.send", "celery"),  # names are case-sensitive
    ],
)
def test_queue_for(name, queue):
    assert topology.queue_for(TASKS, name) == queue


def test_priority_for_a_task_its_own_else_the_default():
    assert topology.priority_for(TASKS, "mail.urgent") == 9
    assert topology.priority_for(TASKS, "reports.daily") == 1
    assert topology.priority_for(TASKS, "mail.send") == 2


def test_the_router_gives_queue_and_priority_by_name():
    router = topology.Router(TASKS)
    assert router("mail.urgent", (), {}, {}) == {"queue": "urgent", "priority": 9}
    assert router("other", (), {}, {}) == {"queue": "celery", "priority": 2}


def test_every_queue_has_its_max_priority_and_the_dead_letter_exchange():
    queues = {q.name: q for q in topology.task_queues(TASKS)}
    assert list(queues) == ["celery", "mail", "urgent", "reports"]
    assert queues["reports"].queue_arguments == {
        "x-max-priority": 3,
        "x-dead-letter-exchange": "coreplane.dead.dlx",
        "x-dead-letter-routing-key": "coreplane.dead",
    }
    dead = topology.dead_letter_queue(TASKS)
    assert (dead.name, dead.exchange.name, dead.routing_key) == (
        "coreplane.dead",
        "coreplane.dead.dlx",
        "coreplane.dead",
    )
    assert topology.default_queue(TASKS) == "celery"


def test_check_accepts_consistent_settings():
    topology.check(TASKS)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"routes": {"a.*": "nowhere", "b": "mail"}}, "undeclared queue(s) nowhere"),
        ({"priorities": {"a": 256, "b": 3, "c": -1}}, "a, c must have a priority of 0-255"),
        ({"soft_time_limit_s": 60.0, "time_limit_s": 60.0}, "SOFT_TIME_LIMIT_S (60) must be below"),
    ],
)
def test_check_refuses_and_says_what_to_change(changes, says):
    with pytest.raises(ValueError, match=r".*") as refused:
        topology.check(TASKS.model_copy(update=changes))
    assert says in str(refused.value)


def test_no_soft_or_no_hard_limit_is_consistent():
    topology.check(TASKS.model_copy(update={"soft_time_limit_s": None}))
    topology.check(TASKS.model_copy(update={"time_limit_s": None}))
