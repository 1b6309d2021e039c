"""schemathesis against the realtime routes, with history and presence on the real Redis:
whatever the body, query or path, no answer is a 5xx and every answer matches the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from controlplane.app import create_app
from tests.support.realtime import redis_url
from tests.support.stores import ADMIN

AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
SCHEMAS = [{"room": "fuzz:*", "json_schema": {"type": "object", "required": ["text"]}}]


@pytest.fixture
def store(tmp_path, services):  # type: ignore[no-untyped-def]
    from tests.support.stores import migrated_store

    with migrated_store("sqlite", tmp_path, services) as migrated:
        yield migrated


def test_no_5xx_and_answers_match_the_schema(store, services):
    server = services.server.model_copy(update={"channel_layer_url": redis_url()})
    realtime = services.realtime.model_copy(update={"schemas": SCHEMAS})
    app = create_app(
        services.model_copy(
            update={"database_url": store.url, "admin_token": ADMIN, "server": server, "realtime": realtime}
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH).include(
        path_regex=r"^/api/v1/realtime/"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6, sorted(op.label for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        check()
