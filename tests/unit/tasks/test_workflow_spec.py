"""The workflow spec's checks, path by path, without a broker."""

from __future__ import annotations

import pytest

from controlplane.errors import Rejected, TooLarge
from controlplane.settings import TasksSettings
from controlplane.tasks import workflow_spec
from controlplane.tasks.workflow_spec import MAX_EDGES, MAX_STEPS, order, parse

TASKS = TasksSettings(queues={"celery": 10, "low": 3})
KNOWN = {"jobs.add", "jobs.total"}
DEEP: list = [1]
for _ in range(40):
    DEEP = [DEEP]


def _field(exc: pytest.ExceptionInfo) -> str:
    return exc.value.errors[0]["field"]


def step(step_id: str, task: str = "jobs.add", **extra: object) -> dict:
    return {"id": step_id, "task": task, **extra}


def test_a_chord_parses_with_its_parents_in_edge_order():
    spec = parse(
        {"name": "sum", "steps": [step("a", args=[1, 2]), step("b", args=[3, 4]), step("t", "jobs.total")],
         "edges": [["b", "t"], ["a", "t"]]},
        TASKS, KNOWN,
    )  # fmt: skip
    assert [s.id for s in spec.steps] == ["a", "b", "t"]
    assert spec.parents("t") == ["b", "a"]
    assert spec.parents("a") == []
    assert spec.as_dict()["edges"] == [["b", "t"], ["a", "t"]]


def test_a_cycle_is_refused_naming_the_steps_on_it():
    raw = {"name": "loop", "steps": [step("start"), step("a"), step("b"), step("c")],
           "edges": [["start", "a"], ["a", "b"], ["b", "c"], ["c", "a"]]}  # fmt: skip
    with pytest.raises(Rejected) as exc:
        parse(raw, TASKS, KNOWN)
    assert _field(exc) == "edges"
    message = str(exc.value)
    assert "cycle" in message
    assert "a -> b -> c -> a" in message
    assert "start" not in message.split("cycle:")[1]


def test_order_puts_parents_first():
    assert order(["t", "a", "b"], [("a", "t"), ("b", "t")]) == ["a", "b", "t"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "", "steps": [step("a")]}, "name"),
        ({"name": "x", "steps": []}, "steps"),
        ({"name": "x", "steps": [step("a", "jobs.nope")]}, "steps[0].task"),
        ({"name": "x", "steps": [step("a"), step("a")]}, "steps[1].id"),
        ({"name": "x", "steps": [step("a b")]}, "steps[0].id"),
        ({"name": "x", "steps": [step("a"), step("b")], "edges": [["a", "zz"]]}, "edges[0]"),
        ({"name": "x", "steps": [step("a")], "edges": [["a", "a"]]}, "edges[0]"),
        ({"name": "x", "steps": [step("a"), step("b")], "edges": [["a", "b"], ["a", "b"]]}, "edges[1]"),
        ({"name": "x", "steps": [step("a")], "edges": [["a"]]}, "edges[0]"),
        ({"name": "x", "steps": [step("a", args=[float("nan")])]}, "steps[0].args"),
        ({"name": "x", "steps": [step("a", kwargs={"k": object()})]}, "steps[0].kwargs"),
        ({"name": "x", "steps": [step("a", args="1,2")]}, "steps[0].args"),
        ({"name": "x", "steps": [step("a", priority=11)]}, "steps[0].priority"),
        ({"name": "x", "steps": [step("a", queue="low", priority=4)]}, "steps[0].priority"),
        ({"name": "x", "steps": [step("a", queue="nowhere")]}, "steps[0].queue"),
        ({"name": "x", "steps": [step("a", immutable="yes")]}, "steps[0].immutable"),
        ({"name": "x", "steps": [step("a", retries=3)]}, "steps[0].retries"),
        ({"name": "x", "steps": [step("a", args=DEEP)]}, "steps[0].args"),
    ],
)
def test_each_bad_spec_is_refused_naming_the_field(raw, field):
    with pytest.raises(Rejected) as exc:
        parse(raw, TASKS, KNOWN)
    assert _field(exc) == field, str(exc.value)


def test_the_caps_on_steps_and_edges():
    many = [step(f"s{i}") for i in range(MAX_STEPS + 1)]
    with pytest.raises(TooLarge):
        parse({"name": "x", "steps": many}, TASKS, KNOWN)
    steps = [step(f"s{i}") for i in range(50)]
    edges = [[f"s{i}", f"s{j}"] for i in range(50) for j in range(i + 1, 50)][: MAX_EDGES + 1]
    assert len(edges) == MAX_EDGES + 1
    with pytest.raises(TooLarge):
        parse({"name": "x", "steps": steps, "edges": edges}, TASKS, KNOWN)
    parse({"name": "x", "steps": steps, "edges": edges[:MAX_EDGES]}, TASKS, KNOWN)


def test_a_priority_within_the_queue_is_kept():
    spec = parse({"name": "x", "steps": [step("a", queue="low", priority=3, immutable=True)]}, TASKS, KNOWN)
    assert spec.steps[0].priority == 3 and spec.steps[0].immutable
    assert workflow_spec.Spec.parents(spec, "a") == []
