"""Every console page module, in one explicit list (app.py mounts each one's router)."""

from console import (
    actions,
    agents,
    catalog,
    events,
    explore,
    overview,
    rules,
    settings,
    task_schedules,
    tasks,
    users,
)

# task_schedules before tasks: /tasks/schedules is matched before /tasks/{task_id}.
MODULES = (users, overview, catalog, explore, events, actions, rules, agents, task_schedules, tasks, settings)
