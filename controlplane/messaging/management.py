"""RabbitMQ's management HTTP API for one virtual host, through httpx: what the topology's diff
reads, and the queue operations it cannot do over AMQP (delete if empty, policies, a
definitions export). Credentials come from the base URL's userinfo and go into basic auth,
so they never appear in a URL that httpx logs. Every name in a path is URL-quoted (a vhost
of "/" is %2F). An answer past MAX_ANSWER_BYTES is refused rather than held in memory.

Errors are the domain's: NotFound (404), Rejected with RabbitMQ's reason (400), Unavailable
when the API cannot be reached, refuses our credentials or answers 5xx.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from controlplane.errors import Conflict, NotFound, Rejected, Unavailable

if TYPE_CHECKING:
    from controlplane.messaging.connection import MessagingRuntime

MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a definitions export of a large vhost fits well within
NO_MANAGEMENT = (
    "no RabbitMQ management API is configured for messaging: set COREPLANE_MESSAGING__MANAGEMENT_URL "
    "or COREPLANE_RABBITMQ__MANAGEMENT_URL"
)
ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")


def _q(name: str) -> str:
    return quote(name, safe="")


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without userinfo, (user, password) or None)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.username is None:
        return base, None
    return base, (unquote(parts.username), unquote(parts.password or ""))


class Management:
    """The management API of one virtual host; a context manager holding one HTTP client."""

    def __init__(self, base_url: str, vhost: str, timeout_s: float = 10) -> None:
        base, auth = split_credentials(base_url)
        self.vhost = vhost
        self._base = base
        self._client = httpx.Client(base_url=base, auth=auth, timeout=timeout_s)

    @classmethod
    def of(cls, runtime: MessagingRuntime, timeout_s: float = 10) -> Self:
        """The management API of the runtime's virtual host; Conflict when none is configured."""
        if not runtime.management_url:
            raise Conflict(NO_MANAGEMENT)
        return cls(runtime.management_url, runtime.vhost, timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- transport -----------------------------------------------------------------------

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """The parsed JSON answer (None for an empty one), or the domain error for it."""
        try:
            with self._client.stream(method, path, **kwargs) as answer:
                body = _read_capped(answer, what)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"RabbitMQ's management API at {self._base} did not answer while reading {what}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _raise_for(answer.status_code, body, what)
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise Unavailable(f"RabbitMQ's management API answered {what} with something not JSON") from exc

    def _vhost_path(self, *parts: str) -> str:
        return "/".join(["/api", parts[0], _q(self.vhost), *(_q(p) for p in parts[1:])])

    # -- reads -----------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        return self._call("GET", "/api/overview", what="the overview")

    def queues(self, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """This vhost's queues (only ``columns`` of each when given: far less to read)."""
        params = {"columns": ",".join(columns)} if columns else None
        return self._call("GET", self._vhost_path("queues"), what="the queues", params=params)

    def queue(self, name: str) -> dict[str, Any]:
        return self._call("GET", self._vhost_path("queues", name), what=f"queue {name!r}")

    def exchanges(self) -> list[dict[str, Any]]:
        return self._call("GET", self._vhost_path("exchanges"), what="the exchanges")

    def bindings(self) -> list[dict[str, Any]]:
        return self._call("GET", self._vhost_path("bindings"), what="the bindings")

    def definitions(self) -> dict[str, Any]:
        return self._call("GET", self._vhost_path("definitions"), what="the definitions")

    def policies(self) -> list[dict[str, Any]]:
        return self._call("GET", self._vhost_path("policies"), what="the policies")

    def policy(self, name: str) -> dict[str, Any]:
        return self._call("GET", self._vhost_path("policies", name), what=f"policy {name!r}")

    def get_messages(self, queue: str, count: int, ackmode: str = "ack_requeue_true") -> list[dict[str, Any]]:
        """Up to ``count`` messages from the head of ``queue`` (requeued by default: a peek)."""
        if ackmode not in ACKMODES:
            raise Rejected.field(f"ackmode must be one of {', '.join(ACKMODES)}", "ackmode", "invalid")
        body = {"count": count, "ackmode": ackmode, "encoding": "auto", "truncate": 65536}
        path = self._vhost_path("queues", queue) + "/get"
        return self._call("POST", path, what=f"messages of queue {queue!r}", json=body)

    # -- writes ----------------------------------------------------------------------------

    def load_definitions(self, doc: dict[str, Any]) -> None:
        self._call("POST", self._vhost_path("definitions"), what="the definitions to load", json=doc)

    def purge(self, name: str) -> None:
        self._call("DELETE", self._vhost_path("queues", name) + "/contents", what=f"queue {name!r}")

    def delete_queue(self, name: str, if_empty: bool = False) -> None:
        params = {"if-empty": "true"} if if_empty else None
        self._call("DELETE", self._vhost_path("queues", name), what=f"queue {name!r}", params=params)

    def put_policy(
        self, name: str, pattern: str, definition: dict[str, Any], apply_to: str = "queues", priority: int = 0
    ) -> None:
        body = {"pattern": pattern, "definition": definition, "apply-to": apply_to, "priority": priority}
        self._call("PUT", self._vhost_path("policies", name), what=f"policy {name!r}", json=body)

    def delete_policy(self, name: str) -> None:
        self._call("DELETE", self._vhost_path("policies", name), what=f"policy {name!r}")


def _read_capped(answer: httpx.Response, what: str) -> bytes:
    chunks, size = [], 0
    for chunk in answer.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise Unavailable(
                f"RabbitMQ's management API answered {what} with over {MAX_ANSWER_BYTES} bytes: not read"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(body: bytes) -> str:
    """RabbitMQ's own words from an error answer ({"error": ..., "reason": ...})."""
    try:
        found = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:500]
    if isinstance(found, dict):
        return str(found.get("reason") or found.get("error") or found)[:500]
    return str(found)[:500]


def _raise_for(status: int, body: bytes, what: str) -> None:
    if status < 400:
        return
    if status == 404:
        raise NotFound(f"RabbitMQ has no {what}")
    if status in (401, 403):
        raise Unavailable(f"RabbitMQ's management API refused our credentials ({status}) for {what}")
    if status >= 500:
        raise Unavailable(f"RabbitMQ's management API failed ({status}) on {what}: {_reason(body)}")
    raise Rejected(f"RabbitMQ refused {what}: {_reason(body)}")
