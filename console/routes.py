"""Every console page module, in one explicit list (app.py mounts each one's router)."""

from console import actions, agents, catalog, events, explore, overview, rules, settings, users

MODULES = (users, overview, catalog, explore, events, actions, rules, agents, settings)
