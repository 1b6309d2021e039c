"""The operator console: server-rendered HTML with htmx, assets vendored under static/."""
