"""OpenTelemetry tracing of a coreplane process: the tracer provider, the libraries'
instrumentations (FastAPI, SQLAlchemy, httpx, Redis, Celery) and the trace ids that
events and actions keep.

Spans always get trace ids, so context propagates and ids are stored even with no
exporter; spans leave the process only when ``COREPLANE_TRACING__OTLP_ENDPOINT`` is set.
Everything is installed once per process: several apps built in one process (tests)
share the provider and never instrument a library, an engine or an app twice."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy import Engine

from controlplane.settings import TracingSettings

log = logging.getLogger("coreplane.tracing")

# Polled by Prometheus, probed by orchestrators, or long-lived (the console's websocket):
# a span each would be noise, and the websocket route is served untouched.
# /s/: a share link's path is its credential, never recorded. OTel searches each pattern
# anywhere in the full URL (scheme://host/path), so each is anchored at the path's start:
# unanchored, an object key like img/s/1.png or logs/metrics went untraced too.
_PATH = r"^[a-z]+://[^/]+"
NOT_TRACED = ",".join(
    _PATH + path for path in (r"/metrics(/backends)?$", r"/healthz$", r"/readyz$", "/ws/", "/static/", "/s/")
)
# Spans the agent makes for its own work carry it (agents/http.py); see _WhereWorkEnters.
AGENT_MARK = "coreplane.component"

_SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
_lock = threading.Lock()
_exporters: dict[str, SpanExporter] = {}  # by endpoint: a second app must not export twice
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_libraries = False
_tracer = trace.get_tracer("coreplane")
_traceparent = TraceContextTextMapPropagator()


class _WhereWorkEnters(Sampler):
    """For spans that begin a trace: a request served, an agent's push or poll, an action
    made outside a request are sampled at the ratio; a query, Redis command or HTTP call
    made outside any trace (the background loops' housekeeping, every second) is not
    recorded on its own."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT and AGENT_MARK not in (attributes or {}):
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"WhereWorkEnters{{{self._ratio.get_description()}}}"


def sampler(ratio: float) -> Sampler:
    """A trace begun elsewhere (the agent's traceparent) follows its sender's decision."""
    return ParentBased(root=_WhereWorkEnters(ratio))


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a bare collector address gets the standard path."""
    parts = urlsplit(endpoint)
    return endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"


def setup(settings: TracingSettings) -> TracerProvider:
    """Install tracing in this process: the provider (kept if one is installed already, by
    an embedding program or a test), the OTLP exporter when an endpoint is set, and the
    library instrumentations. Later calls add only an exporter not installed yet."""
    global _libraries
    with _lock:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            resource = Resource.create({"service.name": settings.service_name})
            provider = TracerProvider(resource=resource, sampler=sampler(settings.sample_ratio))
            trace.set_tracer_provider(provider)
        if settings.otlp_endpoint:
            url = traces_url(settings.otlp_endpoint)
            if url not in _exporters:
                # Imported here: protobuf and the exporter load only when they are used.
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                _exporters[url] = OTLPSpanExporter(endpoint=url, headers=settings.otlp_headers or None)
                provider.add_span_processor(BatchSpanProcessor(_exporters[url]))
                log.info("exporting spans to %s", url)
        if not _libraries:
            HTTPXClientInstrumentor().instrument()
            RedisInstrumentor().instrument()
            _instrument_celery()
            _libraries = True
    return provider


def _instrument_celery() -> None:
    try:  # celery comes with the tasks extra; a server without it has no tasks to trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return
    CeleryInstrumentor().instrument()


def exporters() -> dict[str, SpanExporter]:
    """The OTLP endpoints this process exports to (none unless configured)."""
    return dict(_exporters)


def instrument_engine(engine: Engine) -> None:
    """Trace the engine's statements, once per engine (the store's engine is created before
    tracing could patch ``create_engine``)."""
    with _lock:
        if engine in _engines:
            return
        _engines.add(engine)
    usage = metrics.get_meter(_SQL_SCOPE).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(trace.get_tracer(_SQL_SCOPE), engine, usage)


def instrument_app(app: FastAPI) -> None:
    """Server spans for every route but NOT_TRACED, continuing the caller's traceparent."""
    FastAPIInstrumentor.instrument_app(app, excluded_urls=NOT_TRACED, exclude_spans=["receive", "send"])


def current_trace_id() -> str | None:
    """The 32-hex id of the trace this code runs in, if any."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def action_trace(*, kind: str, target: str) -> dict[str, str]:
    """``{trace_id, traceparent}`` for a new action: the trace of the request or round that
    creates it, or a new trace begun here; empty when tracing is not set up."""
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        return _link(span)
    attributes = {"coreplane.action.kind": kind, "coreplane.action.target": target}
    with _tracer.start_as_current_span(f"action {kind}", attributes=attributes) as span:
        return _link(span)


def _link(span: trace.Span) -> dict[str, str]:
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    carrier: dict[str, str] = {}
    _traceparent.inject(carrier, context=trace.set_span_in_context(span))
    return {"trace_id": trace.format_trace_id(context.trace_id), "traceparent": carrier["traceparent"]}
