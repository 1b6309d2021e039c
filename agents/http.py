"""The agent's HTTP, on urllib3 (which the S3 client needs anyway): one connection pool
per base URL, no TLS context built until an https URL is used, credentials taken out
of the URL so they never reach a log line.

Requests made inside a ``span`` carry its W3C ``traceparent``, so the control plane
continues the agent's trace. OpenTelemetry is optional here (the agent's install stays
small): without it spans are no-ops and requests go out bare."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3

try:
    from opentelemetry import propagate, trace
except ImportError:  # an agent-only install
    propagate = trace = None  # type: ignore[assignment]

HTTPError = urllib3.exceptions.HTTPError
# Marks the agent's own spans: the control plane's sampler records client spans that
# begin a trace only when they carry it (controlplane/tracing.py).
AGENT_MARK = {"coreplane.component": "agent"}


@contextlib.contextmanager
def span(
    name: str,
    *,
    client: bool = False,
    traceparent: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """The current span while the block runs (None without OpenTelemetry). ``traceparent``
    continues a trace begun elsewhere (an action's); otherwise it is a child of the current
    span, or begins a trace. A ``client`` span is one request to the control plane."""
    if trace is None:
        yield None
        return
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
    tracer = trace.get_tracer("coreplane.agent")
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=AGENT_MARK | (attributes or {})
    ) as current:
        yield current


class Response:
    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.status = raw.status
        self.content = raw.data
        self.headers = raw.headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise HTTPError(f"HTTP {self.status}: {self.text[:200]}")


class HttpClient:
    def __init__(
        self,
        base_url: str = "",
        *,
        timeout_s: float,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username is not None and auth is None:
            auth = (parts.username, parts.password or "")
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.base_url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.headers = dict(headers or {})
        if auth is not None:
            self.headers |= urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}")
        self.timeout_s = timeout_s
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        send = self.headers | (headers or {})
        if propagate is not None:
            propagate.inject(send)  # the current span's traceparent, when there is one
        if json_body is not None:
            body = json.dumps(json_body).encode()
            send["Content-Type"] = "application/json"
        raw = self._pool.request(
            method,
            url,
            body=body,
            headers=send,
            timeout=self.timeout_s if timeout_s is None else timeout_s,
            redirect=False,
        )
        return Response(raw)

    def get(self, path: str, **params: Any) -> Response:
        return self.request("GET", path, params=params or None)

    def close(self) -> None:
        self._pool.clear()
