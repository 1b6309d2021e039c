"""schemathesis against the messaging routes, on a real RabbitMQ virtual host: whatever
the body, query or path, no answer is a 5xx and every answer matches the schema. The
imports and backups (admin, broker-wide writes) are left out: their refusals have tests of
their own (test_backup.py)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from controlplane.app import create_app
from tests.support.messaging import settings_for
from tests.support.rabbitmq import rabbit_vhost
from tests.support.stores import ADMIN

AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
DEFINITION = {
    "exchanges": [{"name": "shop", "type": "topic"}],
    "queues": [{"name": "orders", "retry": True}],
    "bindings": [{"exchange": "shop", "queue": "orders", "routing_key": "order.#"}],
}


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path, services):  # type: ignore[no-untyped-def]
    from tests.support.stores import migrated_store

    with migrated_store(request.param, tmp_path, services) as migrated:
        yield migrated


def test_no_5xx_and_answers_match_the_schema(store, services):
    with rabbit_vhost(services) as url:
        base = settings_for(services, url, DEFINITION)
        app = create_app(base.model_copy(update={"database_url": store.url, "admin_token": ADMIN}))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH).include(
            path_regex=r"^/api/v1/messaging/(?!backups|definitions/import)"
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15, sorted(op.label for op in operations)
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def check(case):  # type: ignore[no-untyped-def]
                case.call_and_validate(headers=AUTH, checks=CHECKS)

            check()
