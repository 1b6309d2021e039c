"""Every console page module, in one explicit list (app.py mounts each one's router)."""

from console import (
    actions,
    agents_page,
    catalog_pages,
    events_page,
    explore,
    overview,
    pages,
    rules_page,
    settings_page,
)

MODULES = (
    pages,
    overview,
    catalog_pages,
    explore,
    events_page,
    actions,
    rules_page,
    agents_page,
    settings_page,
)
