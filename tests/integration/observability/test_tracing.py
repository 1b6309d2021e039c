"""Tracing in one process: the real app served by uvicorn on a fresh SQLite store, a real
agent pushing to it and running actions against the real Redis, every span kept by an
in-memory exporter. One trace runs from the agent's push through the API into the
database, and from an action's creation into the agent's step."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from websockets.sync.client import connect

from agents.config import TargetConfig
from controlplane import tracing
from controlplane.actions import lifecycle
from controlplane.app import create_app
from controlplane.clock import utcnow
from controlplane.notify import CHANNELS, NOTIFIER
from controlplane.settings import Settings, TracingSettings, load_settings
from controlplane.store.migrate import upgrade
from controlplane.tasks import make_celery
from tests.support.agents import running_agent
from tests.support.console import console_login
from tests.support.processes import free_port
from tests.support.services import ROOT, require
from tests.support.timing import until

ADMIN = "tracing-test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
HEALTH = {"service_name": "kv", "event_type": "health"}  # what the agent reports (the catalog adds its own)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span this process records from now on (the provider is the app's own)."""
    exporter = InMemorySpanExporter()
    tracing.setup(TracingSettings()).add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def served(tmp_path, spans):
    """(base URL, app): create_app on a migrated SQLite store, served by uvicorn in a thread."""
    store = f"sqlite:///{tmp_path}/store.db"
    upgrade(store)
    app = create_app(Settings(database_url=store, admin_token=ADMIN))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "uvicorn's thread ended before it started"
        return server.started

    until("uvicorn to start", started, 15)
    spans.clear()
    yield f"http://127.0.0.1:{port}", app
    app.state.stopping = True  # long polls answer now (the signal handler does this in `serve`)
    for channel in CHANNELS:
        NOTIFIER.fire(channel)
    server.should_exit = True
    thread.join(timeout=15)


def of_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]


def server_span(found: list[ReadableSpan], route: str) -> ReadableSpan | None:
    return next(
        (s for s in found if s.kind is SpanKind.SERVER and s.attributes.get("http.route") == route), None
    )


def children(found: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in found if s.parent is not None and s.parent.span_id == parent.context.span_id]


def statements(found: list[ReadableSpan]) -> list[str]:
    return [str(s.attributes.get("db.statement", "")) for s in found if s.kind is SpanKind.CLIENT]


def test_one_trace_from_the_agents_push_through_the_api_into_the_database(served, spans, tmp_path, services):
    require(services.redis.url, "redis")
    url, _app = served
    kv = TargetConfig(type="redis", name="kv", address=services.redis.url, role="primary")
    with running_agent(url, ADMIN, tmp_path, kv):
        events = until(
            "the agent's first health event stored",
            lambda: httpx.get(f"{url}/api/v1/events", params=HEALTH, headers=AUTH).json()["events"],
        )
    trace_id = events[0]["details"]["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)

    def whole_trace() -> list[ReadableSpan] | None:
        found = of_trace(spans, trace_id)  # the server span ends just after its answer is sent
        return found if server_span(found, "/api/v1/ingest") else None

    found = until("the ingest request's server span", whole_trace, timeout_s=5)
    (push,) = [s for s in found if s.name == "agent push"]
    assert push.kind is SpanKind.CLIENT and push.parent is None  # the agent began the trace
    assert push.attributes["coreplane.agent"] == "test-agent"
    ingest = server_span(found, "/api/v1/ingest")
    assert ingest.name == "POST /api/v1/ingest"
    assert ingest.parent.span_id == push.context.span_id and ingest.parent.is_remote  # from traceparent
    queries = statements(children(found, ingest))
    assert any(q.startswith("INSERT INTO infrastructure_events") for q in queries), queries
    assert any(q.startswith("INSERT INTO infrastructure_metrics") for q in queries), queries
    # The console's events page shows the stored trace id, linked to the events of that trace.
    admin, answer = console_login(url, token=ADMIN)
    assert answer.status_code == 303
    page = admin.get("/events", params={"service_name": "kv"})
    assert page.status_code == 200 and f'href="/events?q={trace_id}"' in page.text


def test_an_action_carries_its_creating_trace_into_the_agents_step(served, spans, tmp_path, services):
    require(services.redis.url, "redis")
    url, _app = served
    kv = TargetConfig(type="redis", name="kv", address=services.redis.url, role="primary")
    with running_agent(url, ADMIN, tmp_path, kv):

        def watched() -> bool:
            answer = httpx.get(f"{url}/api/v1/services/kv", params={"wait": 0}, headers=AUTH)
            return answer.status_code == 200 and any(
                i["health"] == "passing" for i in answer.json()["instances"]
            )

        until("the catalog to know the agent's Redis as passing", watched)
        tag = f"trace-{uuid.uuid4().hex[:8]}"
        body = {"kind": "cache.invalidate", "target": "kv", "params": {"namespace": "tracing", "tags": [tag]}}
        # The operator's own tool traces its request; the action joins that trace.
        with trace.get_tracer("tests").start_as_current_span("operator invalidates a tag") as operator:
            created = httpx.post(f"{url}/api/v1/actions", json=body, headers=AUTH)
        assert created.status_code == 201, created.text
        trace_id = trace.format_trace_id(operator.get_span_context().trace_id)
        assert created.json()["links"]["trace_id"] == trace_id
        action_url = f"{url}/api/v1/actions/{created.json()['id']}"
        done = until(
            "the invalidation to finish",
            lambda: (a := httpx.get(action_url, headers=AUTH).json())["state"] in lifecycle.FINISHED and a,
        )
    assert done["state"] == "succeeded", done
    (step_action,) = done["children"]
    assert step_action["kind"] == "cache.flush" and step_action["links"]["trace_id"] == trace_id

    found = of_trace(spans, trace_id)
    create = server_span(found, "/api/v1/actions")
    assert create is not None and create.name == "POST /api/v1/actions"
    (step,) = [s for s in found if s.name == "agent action cache.flush"]
    # The step's parent is the request that created the action, across the poll.
    assert step.parent.span_id == create.context.span_id
    assert (
        step.attributes["coreplane.action.id"] == step_action["id"] and step.attributes["coreplane.action.ok"]
    )
    start = server_span(found, "/api/v1/actions/{action_id}/start")
    assert start is not None and start.parent.span_id == step.context.span_id
    (report,) = [s for s in children(found, step) if s.name == "agent action result"]
    result = server_span(found, "/api/v1/actions/{action_id}/result")
    assert result is not None and result.parent.span_id == report.context.span_id
    redis_calls = [s for s in children(found, step) if s.attributes.get("db.system") == "redis"]
    assert redis_calls, "the actuator's Redis commands belong to the step"
    # The console's action page shows the trace.
    admin, _ = console_login(url, token=ADMIN)
    page = admin.get(f"/actions/{done['id']}")
    assert page.status_code == 200 and trace_id in page.text


def test_an_action_made_outside_any_request_begins_its_own_trace(served, spans):
    _url, app = served
    assert not trace.get_current_span().get_span_context().is_valid
    with app.state.sessionmaker.begin() as session:  # as the policy engine's round does
        action, _ = lifecycle.create(session, kind="cache.flush", target="nowhere", params={},
                                     requested_by="rule:test", now=utcnow())  # fmt: skip
        links = dict(action.links)
    (begun,) = of_trace(spans, links["trace_id"])
    assert begun.name == "action cache.flush" and begun.parent is None
    assert links["traceparent"].split("-")[2] == trace.format_span_id(begun.context.span_id)


def _await_control_statements(engine: sa.Engine, count: int) -> None:
    """Until ``count`` statements began on the control loop's thread after this call: they
    run one after another there, so all but the last have ended, and their spans with them."""
    begun: list[str] = []

    def note(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "control":
            begun.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        until(f"{count} statements of the control loop's rounds", lambda: len(begun) >= count)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def test_without_an_endpoint_no_exporter_and_the_app_still_works(served, spans, tmp_path):
    url, app = served
    assert app.state.settings.tracing.otlp_endpoint is None
    assert tracing.exporters() == {}
    processors = trace.get_tracer_provider()._active_span_processor._span_processors
    assert not any(isinstance(p, BatchSpanProcessor) for p in processors)  # what an exporter runs in
    # Unauthenticated and long-lived routes answer and make no span.
    assert httpx.get(f"{url}/metrics").status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200
    admin, _ = console_login(url, token=ADMIN)
    headers = {"Cookie": f"coreplane_session={admin.cookies['coreplane_session']}", "Origin": url}
    with connect(url.replace("http://", "ws://") + "/ws/console?page=events", additional_headers=headers,
                 open_timeout=5) as ws:  # fmt: skip
        assert ws.recv(timeout=5).strip().startswith('<section id="events">')
    routes = {s.attributes.get("http.route") for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER}
    assert not routes & {"/metrics", "/healthz", "/ws/console"}, routes
    # The control loop's rounds (every second) run meanwhile: their queries, like this test's
    # own untraced httpx calls, are not traces of their own.
    _await_control_statements(app.state.engine, 3)
    roots = [s for s in spans.get_finished_spans() if s.parent is None]
    assert not [s.name for s in roots if s.kind is SpanKind.CLIENT and tracing.AGENT_MARK not in s.attributes]

    # A second app in the same process, set up again: nothing is instrumented twice, and an
    # untraced client's batch still gets the server's trace id.
    second = create_app(Settings(database_url=app.state.settings.database_url, admin_token=ADMIN))
    tracing.setup(second.state.settings.tracing)
    tracing.instrument_engine(second.state.engine)
    tracing.instrument_app(second)
    spans.clear()
    event = {"event_type": "deploy", "service_name": "web", "timestamp": utcnow().isoformat() + "Z",
             "status": "passing", "details": {"message": "v2"}}  # fmt: skip
    answer = TestClient(second, headers=AUTH).post(
        "/api/v1/ingest", json={"batch_id": f"b-{uuid.uuid4().hex}", "agent": "cli", "events": [event]}
    )
    assert answer.status_code == 202, answer.text
    (request,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert request.parent is None
    inserts = [q for q in statements(children(spans.get_finished_spans(), request))
               if q.startswith("INSERT INTO infrastructure_events")]  # fmt: skip
    assert len(inserts) == 1
    stored = httpx.get(f"{url}/api/v1/events", params={"service_name": "web"}, headers=AUTH).json()["events"]
    assert stored[0]["details"] == {
        "message": "v2",
        "trace_id": trace.format_trace_id(request.context.trace_id),
    }
    second.state.engine.dispose()


def test_an_agent_without_opentelemetry_still_pushes(served, spans, tmp_path):
    url, _app = served
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.modules["opentelemetry"] = None  # as on an agent-only install: importing it fails
        from agents.client import ControlPlaneClient
        from agents.runtime import Buffer, Shipper
        from agents.spool import Spool

        buffer = Buffer()
        buffer.add(events=[{{"event_type": "health", "service_name": "bare", "status": "passing",
                             "timestamp": "{utcnow().isoformat()}Z", "details": {{"message": "no otel"}}}}])
        client = ControlPlaneClient("{url}", "{ADMIN}", 5)
        print(Shipper(client, Spool(Path("{tmp_path}") / "spool", 1 << 20), buffer, "bare-agent").run_once())
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    stored = httpx.get(f"{url}/api/v1/events", params={"service_name": "bare"}, headers=AUTH).json()["events"]
    # No traceparent came with it: the server's own trace, begun at its request span.
    trace_id = stored[0]["details"]["trace_id"]
    server = lambda: [s for s in of_trace(spans, trace_id) if s.kind is SpanKind.SERVER]  # noqa: E731
    (request,) = until("the ingest request's server span", server, timeout_s=5)
    assert request.parent is None and request.attributes["http.route"] == "/api/v1/ingest"


def test_a_task_published_inside_a_trace_carries_it(spans, services):
    require(services.rabbitmq.url, "rabbitmq")
    celery = make_celery(services)  # the queues as the workers declare them (priority, dead letters)
    with trace.get_tracer("tests").start_as_current_span("application publishes") as root:
        celery.send_task("coreplane.ping", expires=30)  # a ping no worker takes expires unanswered
    trace_id = trace.format_trace_id(root.get_span_context().trace_id)
    (publish,) = [s for s in of_trace(spans, trace_id) if s.kind is SpanKind.PRODUCER]
    assert publish.name == "apply_async/coreplane.ping"
    assert publish.parent.span_id == root.get_span_context().span_id


def test_tracing_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("COREPLANE_TRACING__OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("COREPLANE_TRACING__SAMPLE_RATIO", "0.25")
    settings = load_settings()
    assert settings.tracing.otlp_endpoint == "http://collector:4318"
    assert settings.tracing.sample_ratio == 0.25 and settings.tracing.service_name == "coreplane"
    assert tracing.traces_url(settings.tracing.otlp_endpoint) == "http://collector:4318/v1/traces"
    assert tracing.traces_url("https://otel.example/custom/path") == "https://otel.example/custom/path"
