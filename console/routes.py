"""Every console page module, in one explicit list (app.py mounts each one's router)."""

from console import (
    actions,
    agents,
    catalog,
    events,
    explore,
    messaging,
    messaging_dead,
    messaging_queues,
    overview,
    realtime,
    rules,
    settings,
    storage,
    task_schedules,
    tasks,
    users,
)

# task_schedules before tasks: /tasks/schedules is matched before /tasks/{task_id}.
MODULES = (
    users, overview, catalog, explore, events, actions, rules, agents, task_schedules, tasks,
    messaging_dead, messaging_queues, messaging, realtime, storage, settings,
)  # fmt: skip
