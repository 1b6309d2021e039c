"""The storage tests' app (``api``: in process on a fresh store, storage on the real S3
server, 5 MiB parts so multipart paths run on small bodies) and the raw SDK (``raw``). A
module needing other settings defines its own ``api``."""

from __future__ import annotations

import pytest

from tests.support.storage import raw_client, storage_api


@pytest.fixture
def api(services, tmp_path):
    with storage_api(services, tmp_path, part_size_mb=5) as client:
        yield client


@pytest.fixture
def raw(services):
    return raw_client(services)
