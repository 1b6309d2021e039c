"""schemathesis with the inputs issue 12 (finding 7) found answered with a 500, as explicit
examples on both dialects: each gets a 4xx problem+json that matches the schema."""

from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from controlplane.app import create_app
from tests.support.stores import ADMIN, make_settings

AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
LATE, EARLY = "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"
# Within retention, so that the only thing wrong with an example is the odd part.
RECENT = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()


def _event(**change) -> dict:
    return {"event_type": "health", "service_name": "redis", "timestamp": RECENT,
            "status": "critical", "details": {"instance": "10.0.0.1:6379"}, **change}  # fmt: skip


def _batch(**change) -> dict:
    return {"batch_id": "examples", "agent": "a", "metrics": [], "events": [], **change}


def _point(**change) -> dict:
    return {
        "metric_type": "m",
        "service_name": "s",
        "timestamp": RECENT,
        "value": 1.0,
        **change,
    }


EXAMPLES = [
    ("POST /api/v1/ingest", {"body": _batch(metrics=[_point(timestamp=LATE)])}),
    ("POST /api/v1/ingest", {"body": _batch(metrics=[_point(timestamp=EARLY)])}),
    ("POST /api/v1/ingest", {"body": _batch(events=[_event(timestamp=LATE)])}),
    ("POST /api/v1/ingest", {"body": _batch(events=[_event(details={"instance": "h:1", "role": {"a": 1}})])}),
    ("POST /api/v1/ingest", {"body": _batch(events=[_event(details={"instance": "h:1", "message": ["x"]})])}),
    ("POST /api/v1/ingest", {"body": _batch(metrics=[_point(value="1.5")])}),
    ("POST /api/v1/ingest", {"body": _batch(metrics=[_point(value=True)])}),
    ("GET /api/v1/metrics", {"query": {"metric_type": "m", "start": LATE}}),
    ("GET /api/v1/metrics", {"query": {"metric_type": "m", "end": EARLY}}),
    ("GET /api/v1/metrics", {"query": {"metric_type": "m", "tags": [f"k{i}=v" for i in range(30)]}}),
    ("GET /api/v1/events", {"query": {"since": LATE}}),
    ("GET /api/v1/events", {"query": {"until": EARLY}}),
    ("PUT /api/v1/settings/{setting_type}",
     {"path_parameters": {"setting_type": "deep"}, "body": {"value": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "version": 0}}),
]  # fmt: skip


@pytest.mark.parametrize(("label", "parts"), EXAMPLES, ids=[f"{i}-{e[0]}" for i, e in enumerate(EXAMPLES)])
def test_the_inputs_that_gave_500s_get_a_4xx_problem(store, label, parts):
    app = create_app(make_settings(store))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    case = operation.Case(**parts)
    response = case.call_and_validate(headers=AUTH, checks=CHECKS)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"][0].startswith("application/problem+json")
