"""Placeholder of the storage helper building mirror: replaced by its real module."""

from __future__ import annotations

from sqlalchemy.orm import Session

from controlplane.storage.client import Storage


def tick(session: Session, storage: Storage) -> None:
    """The storage loop's mirror round (nothing yet)."""
