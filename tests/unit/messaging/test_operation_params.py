"""Queue operations refuse bad parameters before an action is stored, naming params.<field>;
the preview says in words what each will do."""

from __future__ import annotations

import pytest

from controlplane.actions import plans
from controlplane.errors import Rejected
from controlplane.messaging import operations


def refused(kind: str, params: dict) -> str:
    with pytest.raises(Rejected) as error:
        plans.check_params(kind, params)
    return error.value.errors[0]["field"]


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("mq.apply", {"prune": "yes"}, "params.prune"),
        (
            "mq.apply",
            {"definition": {"queues": [{"name": "q", "type": "stream"}]}},
            "params.definition.queues[0].type",
        ),
        ("mq.declare", {"queue": {"name": "q", "max_priority": 0}}, "params.queue.max_priority"),
        (
            "mq.declare",
            {"queue": {"name": "q"}, "bindings": [{"exchange": "e", "queue": "other"}]},
            "params.bindings[0].queue",
        ),
        ("mq.declare", {}, "params.queue"),
        ("mq.delete", {"queue": ""}, "params.queue"),
        ("mq.delete", {"queue": "q", "if_empty": 1}, "params.if_empty"),
        ("mq.move", {"source": "a", "destination": "a"}, "params.destination"),
        ("mq.move", {"source": "a", "destination": "b", "limit": 10001}, "params.limit"),
        ("mq.move", {"source": "a", "destination": "b", "limit": True}, "params.limit"),
        ("mq.move", {"source": "a" * 256, "destination": "b"}, "params.source"),
        ("mq.policy", {"name": "p", "pattern": "(", "definition": {"max-length": 1}}, "params.pattern"),
        (
            "mq.policy",
            {"name": "p", "pattern": "^q$", "definition": {"colour": "red"}},
            "params.definition.colour",
        ),
        (
            "mq.policy",
            {"name": "p", "pattern": "^q$", "definition": {"max-length": -1}},
            "params.definition.max-length",
        ),
        (
            "mq.policy",
            {"name": "p", "pattern": "^q$", "definition": {"ha-mode": "all"}},
            "params.definition.ha-mode",
        ),
        ("mq.policy", {"name": "p", "pattern": "^q$", "definition": {}}, "params.definition"),
        (
            "mq.policy",
            {"name": "p", "pattern": "^q$", "definition": {"overflow": "drop-head"}, "apply_to": "streams"},
            "params.apply_to",
        ),
        ("mq.policy", {"name": "p", "pattern": "x" * 256, "definition": {"max-length": 1}}, "params.pattern"),
        ("mq.policy_delete", {"name": None}, "params.name"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(kind, params, field):
    assert refused(kind, params) == field


def test_good_parameters_pass():
    plans.check_params("mq.apply", {"prune": True, "force": False, "definition": {"queues": [{"name": "q"}]}})
    plans.check_params("mq.declare", {"queue": {"name": "q", "type": "quorum"},
                                      "bindings": [{"exchange": "amq.topic", "queue": "q", "routing_key": "a.#"}]})  # fmt: skip
    plans.check_params("mq.move", {"source": "a", "destination": "b", "limit": 10000})
    plans.check_params("mq.policy", {"name": "cap", "pattern": "^orders\\.", "apply_to": "queues", "priority": 5,
                                     "definition": {"max-length": 100, "overflow": "reject-publish", "message-ttl": 0}})  # fmt: skip


def test_the_preview_says_what_will_happen():
    move = operations.describe(
        None, "mq.move", {"source": "orders", "destination": "orders.replay", "limit": 100}
    )
    assert move[0] == "Move at most 100 messages from orders to orders.replay, oldest first"
    assert (
        "only if it is empty" in operations.describe(None, "mq.delete", {"queue": "q", "if_empty": True})[0]
    )
    assert "every message in it" in operations.describe(None, "mq.delete", {"queue": "q"})[0]
    forced = " ".join(operations.describe(None, "mq.apply", {"prune": True, "force": True}))
    assert "they are lost" in forced and "Remove the exchanges" in forced
    assert "no prune" in " ".join(operations.describe(None, "mq.apply", {}))
    assert set(operations.KINDS) <= set(operations.DESCRIBE)
    assert set(operations.KINDS) <= set(plans.PLANS) and set(operations.KINDS) <= set(plans.PARAM_CHECKS)
