"""A migrated SQLite store per test for the history and analytics units."""

from __future__ import annotations

import pytest

from controlplane.store.db import make_engine, make_sessionmaker
from controlplane.store.migrate import upgrade


@pytest.fixture
def sessions(tmp_path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/store.db"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()
