"""Placeholder of the storage helper building analytics: replaced by its real module."""

from __future__ import annotations

from sqlalchemy.orm import Session

from controlplane.storage.client import Storage


def tick(session: Session, storage: Storage) -> None:
    """The storage loop's analytics round (nothing yet)."""
