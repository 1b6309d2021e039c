"""Persistence: models, engine and sessions, migrations (Postgres and SQLite)."""
