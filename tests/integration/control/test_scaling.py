"""Scaling, for real: a Celery backlog grows the worker pool through the agent, an idle
queue shrinks it; never past the bounds; the cooldown holds between two changes."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from itertools import pairwise

import httpx
import pytest
from dotenv import dotenv_values

from agents.config import TargetConfig
from tests.support.agents import running_agent, running_worker
from tests.support.services import SERVICES_ENV
from tests.support.timing import until

COOLDOWN_S = 6
# A Celery probe's ping waits out its 2 s timeout until the worker's heartbeat events are
# heard (or when a worker is gone), so a point may come ~3 s after the last: a 5 s window
# always holds one, a 3 s window can be empty and the condition drop.
RUN = uuid.uuid4().hex[:8]
QUEUE, WORKER = f"scaling-{RUN}", f"scaling-{RUN}@test"
RULES = f"""
- name: tasks-scale-up
  trigger:
    metric: {{name: coreplane_celery_queue_length, service: tasks, agg: max, window_s: 5, op: ">", threshold: 5,
             for_s: 2}}
  action: {{kind: scale, target: tasks, params: {{op: grow, n: 1, min: 1, max: 3, destination: ["{WORKER}"]}}}}
  cooldown_s: {COOLDOWN_S}
- name: tasks-scale-down
  trigger:
    metric: {{name: coreplane_celery_queue_length, service: tasks, agg: max, window_s: 5, op: "<", threshold: 1,
             for_s: 3}}
  action: {{kind: scale, target: tasks, params: {{op: shrink, n: 1, min: 1, max: 3, destination: ["{WORKER}"]}}}}
  cooldown_s: {COOLDOWN_S}
"""


@pytest.fixture
def own_worker(services, control_plane_sqlite):
    """A worker of this test's own, on a queue of its own: no other worker takes its tasks,
    and pool changes reach only it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREPLANE_")}
    env |= {k: v for k, v in dotenv_values(SERVICES_ENV).items() if v is not None}
    queues = {"celery": 10, QUEUE: 10}  # the worker and the publisher declare it alike
    env["COREPLANE_TASKS__QUEUES"] = json.dumps(queues)
    own = services.model_copy(update={"tasks": services.tasks.model_copy(update={"queues": queues})})
    with running_worker(own, env, f"--queues={QUEUE}", f"--name={WORKER}", name=WORKER) as celery:
        yield celery


def test_a_backlog_grows_the_pool_and_idleness_shrinks_it(
    control_plane_sqlite, own_worker, services, tmp_path
):
    url, token, log = control_plane_sqlite
    admin = {"Authorization": f"Bearer {token}"}
    put = httpx.put(f"{url}/api/v1/rules", headers=admin, json={"yaml": RULES, "version": 0})
    assert put.status_code == 200, put.text

    def pool_size() -> int:
        stats = own_worker.control.inspect(timeout=2, destination=[WORKER]).stats() or {}
        return len(stats[WORKER]["pool"]["processes"]) if WORKER in stats else -1

    tasks = TargetConfig(type="celery", name="tasks", address=services.rabbitmq.url, interval_s=1,
                         options={"queues": [QUEUE], "inspect_interval_s": 5})  # fmt: skip
    sizes = []
    with running_agent(url, token, tmp_path, tasks, name="scaling-agent", heartbeat_interval_s=1):
        assert pool_size() == 1
        for _ in range(60):
            own_worker.send_task("coreplane.sleep", args=[1.0], queue=QUEUE)
        # The backlog drains, two shrinks come 6 s apart, then one more finds the pool at its
        # bound; a slow CI machine needs the room.

        def grown_and_shrunk_to_its_bound() -> bool:
            sizes.append(pool_size())
            return 3 in sizes and sizes[-1] == 1 and bool(_bound_outputs(url, admin))

        until("the pool to grow to 3, then shrink to 1 and meet its bound", grown_and_shrunk_to_its_bound, 180, 0.5,
              logs=lambda: f"the pool went {sizes}; serve log:\n{log.read_text()[-2000:]}")  # fmt: skip
    observed = [s for s in sizes if s > 0]
    assert max(observed) == 3 and min(observed) == 1, observed
    assert observed[-1] == 1
    fired = httpx.get(f"{url}/api/v1/rules/evaluations", headers=admin, params={"outcome": "fired"}).json()
    for rule in ("tasks-scale-up", "tasks-scale-down"):
        times = sorted(datetime.fromisoformat(e["at"].rstrip("Z")) for e in fired if e["rule"] == rule)
        assert len(times) >= 2, f"{rule} fired {len(times)} time(s)"
        gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
        assert min(gaps) >= COOLDOWN_S, f"{rule} fired {gaps} s apart, inside its {COOLDOWN_S} s cooldown"
    # At the bound the agent refused to go further: the step says so, and every step succeeded.
    actions = httpx.get(f"{url}/api/v1/actions", headers=admin, params={"kind": "scale", "limit": 100}).json()
    assert all(a["state"] in ("succeeded", "running", "pending", "dispatched") for a in actions), actions
    assert any("at its bound" in o for o in _bound_outputs(url, admin))


def _bound_outputs(url: str, admin: dict) -> list[str]:
    """What the finished scale actions' steps said about the pool's bounds."""
    actions = httpx.get(f"{url}/api/v1/actions", headers=admin, params={"kind": "scale", "limit": 100}).json()
    return [
        step["skipped"]
        for a in actions if a["state"] == "succeeded"
        for step in (a["result"]["output"].get("results") or []) if "skipped" in step
    ]  # fmt: skip
