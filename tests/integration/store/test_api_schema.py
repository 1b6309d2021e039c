"""schemathesis against /openapi.json: the ingest, query and settings endpoints never
answer 5xx, and every answer matches the schema.

Driven through schemathesis' Python API with hypothesis (its pytest plugin does not
load under pytest 9)."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from controlplane.app import create_app
from tests.support.stores import ADMIN, make_settings

AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_no_5xx_and_answers_match_the_schema(store):
    app = create_app(make_settings(store))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH).include(
        path_regex=r"^/api/v1/(ingest|metrics|events|settings)"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert labels == [
        "GET /api/v1/events",
        "GET /api/v1/metrics",
        "GET /api/v1/settings/{setting_type}",
        "GET /api/v1/settings/{setting_type}/history",
        "POST /api/v1/ingest",
        "PUT /api/v1/settings/{setting_type}",
    ]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        check()
