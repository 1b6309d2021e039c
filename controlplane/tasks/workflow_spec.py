"""A workflow's declarative spec, checked: steps (a task each, with its arguments, queue
and priority) and edges between them. Pure: no broker, no store, so every refusal is
tested without a service (tests/unit/tasks/test_workflow_spec.py).

    {"name": "sum", "steps": [{"id": "a", "task": "jobs.add", "args": [1, 2]},
                              {"id": "b", "task": "jobs.add", "args": [3, 4]},
                              {"id": "t", "task": "jobs.total"}],
     "edges": [["a", "t"], ["b", "t"]]}

A step with parents receives their results prepended to its arguments (one parent: its
value, as a chain passes it; several: a list in edge order, as a chord's body gets its
group's), unless it is ``immutable``. Steps with no path between them run in parallel.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from controlplane.errors import Rejected, TooLarge
from controlplane.settings import TasksSettings
from controlplane.tasks import submit

MAX_STEPS = 200
MAX_EDGES = 1000
STEP_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
STEP_KEYS = frozenset({"id", "task", "args", "kwargs", "queue", "priority", "immutable"})


@dataclass(frozen=True)
class Step:
    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    immutable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "immutable": self.immutable,
        }


@dataclass(frozen=True)
class Spec:
    name: str
    steps: tuple[Step, ...]
    edges: tuple[tuple[str, str], ...]

    def parents(self, step_id: str) -> list[str]:
        """The steps ``step_id`` waits for, in edge order (the order of its results list)."""
        return [a for a, b in self.edges if b == step_id]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": [s.as_dict() for s in self.steps],
            "edges": [list(e) for e in self.edges],
        }


def _bad(where: str, why: str) -> Rejected:
    return Rejected.field(f"{where}: {why}", where, why, kind="body")


def _step(raw: Any, index: int, tasks: TasksSettings, known: Collection[str]) -> Step:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise _bad(where, "must be an object {id, task, args?, kwargs?, queue?, priority?, immutable?}")
    extra = sorted(set(raw) - STEP_KEYS)
    if extra:
        raise _bad(f"{where}.{extra[0]}", f"unknown key; a step has {', '.join(sorted(STEP_KEYS))}")
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not STEP_ID.match(step_id):
        raise _bad(f"{where}.id", "must be 1 to 100 letters, digits, '_', '.' or '-'")
    task = raw.get("task")
    if not isinstance(task, str) or task not in known:
        raise _bad(
            f"{where}.task",
            f"unknown task {task!r} (step {step_id}): register it in a module listed in "
            f"COREPLANE_TASKS__MODULES",
        )
    args, kwargs = raw.get("args", []), raw.get("kwargs", {})
    submit.check_arguments(args, kwargs, field=where)
    queue, priority = raw.get("queue"), raw.get("priority")
    if queue is not None and not isinstance(queue, str):
        raise _bad(f"{where}.queue", "must be a queue name")
    submit.route(tasks, task, queue, priority, field=where)
    immutable = raw.get("immutable", False)
    if not isinstance(immutable, bool):
        raise _bad(f"{where}.immutable", "must be true or false")
    return Step(step_id, task, list(args), dict(kwargs), queue, priority, immutable)


def _edges(raw: Any, ids: set[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list):
        raise _bad("edges", "must be a list of [from, to] pairs of step ids")
    if len(raw) > MAX_EDGES:
        raise TooLarge(
            f"edges: {len(raw)} edges, over {MAX_EDGES}",
            [{"kind": "body", "index": None, "field": "edges", "reason": "too many"}],
        )
    edges: list[tuple[str, str]] = []
    for index, edge in enumerate(raw):
        where = f"edges[{index}]"
        if not isinstance(edge, list) or len(edge) != 2 or not all(isinstance(e, str) for e in edge):
            raise _bad(where, "must be a [from, to] pair of step ids")
        for end in edge:
            if end not in ids:
                raise _bad(where, f"names no step: {end!r}")
        if edge[0] == edge[1]:
            raise _bad(where, f"step {edge[0]} cannot depend on itself")
        if (edge[0], edge[1]) in edges:
            raise _bad(where, f"repeats the edge {edge[0]} -> {edge[1]}")
        edges.append((edge[0], edge[1]))
    return tuple(edges)


def order(step_ids: list[str], edges: Collection[tuple[str, str]]) -> list[str]:
    """The steps in an order where each comes after its parents (Kahn's algorithm, stable in
    the spec's order); Rejected naming the steps on a cycle when there is one."""
    parents = {s: [a for a, b in edges if b == s] for s in step_ids}
    done: list[str] = []
    placed: set[str] = set()
    progress = True
    while progress:
        progress = False
        for s in step_ids:
            if s not in placed and all(p in placed for p in parents[s]):
                done.append(s)
                placed.add(s)
                progress = True
    if len(done) < len(step_ids):
        cycle = _a_cycle([s for s in step_ids if s not in placed], parents)
        raise _bad("edges", f"form a cycle: {' -> '.join(cycle)}; a workflow must have none")
    return done


def _a_cycle(left: list[str], parents: dict[str, list[str]]) -> list[str]:
    """One cycle among the steps Kahn's algorithm could not place: each of them has a
    parent among them, so walking parents must come back to a step already seen."""
    remaining = set(left)
    walk, at = [left[0]], left[0]
    while True:
        at = next(p for p in parents[at] if p in remaining)
        if at in walk:
            cycle = walk[walk.index(at) :]
            cycle.reverse()  # parents were walked: read it forwards
            first = min(cycle, key=left.index)  # from the step the spec lists first
            cycle = cycle[cycle.index(first) :] + cycle[: cycle.index(first)]
            return [*cycle, cycle[0]]
        walk.append(at)


def parse(raw: Any, tasks: TasksSettings, known: Collection[str]) -> Spec:
    """The checked spec; Rejected (TooLarge past the caps) naming what to fix."""
    if not isinstance(raw, dict):
        raise _bad("spec", "must be an object {name, steps, edges}")
    name = raw.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise _bad("name", "must be text of 1 to 100 characters")
    steps_in = raw.get("steps")
    if not isinstance(steps_in, list) or not steps_in:
        raise _bad("steps", "must be a non-empty list of steps")
    if len(steps_in) > MAX_STEPS:
        raise TooLarge(
            f"steps: {len(steps_in)} steps, over {MAX_STEPS}",
            [{"kind": "body", "index": None, "field": "steps", "reason": "too many"}],
        )
    steps = [_step(s, i, tasks, known) for i, s in enumerate(steps_in)]
    ids: set[str] = set()
    for index, step in enumerate(steps):
        if step.id in ids:
            raise _bad(f"steps[{index}].id", f"repeats the id {step.id!r}; step ids must be unique")
        ids.add(step.id)
    edges = _edges(raw.get("edges", []), ids)
    order([s.id for s in steps], edges)
    return Spec(name, tuple(steps), edges)
