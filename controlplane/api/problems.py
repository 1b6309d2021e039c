"""RFC 9457 problem+json for every error, with a reason a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.errors import Rejected
from controlplane.web import DOMAIN_ERRORS, status_of

PROBLEM = "application/problem+json"


class ItemProblem(BaseModel):
    kind: str | None = None
    index: int | None = None
    field: str | None = None
    reason: str
    code: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ItemProblem] | None = None


ERROR_STATUSES = {
    "400": "Bad request",
    "401": "Missing or invalid credential",
    "403": "The credential may not do this",
    "404": "Not found",
    "409": "Conflict with the current state",
    "413": "Body too large",
    "415": "Unsupported Content-Encoding",
    "422": "Invalid input: detail and errors say what to fix",
    "503": "The store is busy (lock contention) or not configured: retry after Retry-After seconds",
}

RETRY_AFTER_S = 1
# SQLite's answers when busy_timeout ran out waiting for another writer.
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")
# PostgreSQL: serialization failure, deadlock detected, lock not available (lock_timeout).
_PG_CONTENTION = {"40001", "40P01", "55P03"}


def is_contention(exc: Exception) -> bool:
    """True when the store refused only because another transaction held what this one
    needed: the same request succeeds when sent again a moment later. ``exc`` is
    SQLAlchemy's error, or psycopg's own from a raw cursor (the COPY writes use one)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) in _PG_CONTENTION:
        return True
    return any(text in str(orig) for text in _SQLITE_BUSY)


def busy(request: Request) -> Response:
    """503 + Retry-After: problem+json for the API, plain text for the console's pages."""
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    detail = (
        f"the store is busy with other writes (lock contention) and this request's own writes were "
        f"rolled back: send it again after {RETRY_AFTER_S} s (Retry-After)"
    )
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(f"503 Service Unavailable: {detail}", 503, headers=headers)
    response = problem(503, "Service Unavailable", detail)
    response.headers.update(headers)
    return response


def document(schema: dict) -> None:
    """Declare problem+json as the body of every API error answer in the OpenAPI schema."""
    ref = {"$ref": "#/components/schemas/Problem"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(Problem.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs"))
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components["Problem"].pop("$defs", None)
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                entry = responses.setdefault(status, {"description": description})
                entry["content"] = {PROBLEM: {"schema": ref}}


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


# Paths answered as problem+json although outside /api: what machines read.
MACHINE_PATHS = ("/openapi.json", "/healthz", "/readyz", "/metrics", "/metrics/backends")
# An error page for a person: (request, status, title, detail) -> the response.
Page = Callable[[Request, int, str, str], Response]


def for_machines(request: Request) -> bool:
    """True for the API (problem+json); False for the console's pages (HTML)."""
    path = request.url.path
    return path.startswith("/api/") or path == "/api" or path in MACHINE_PATHS


def install(app: FastAPI, page: Page | None = None) -> None:
    """Translate every error to its answer, once: problem+json under /api, and ``page``
    (the console's HTML error page, when given) everywhere else. The status of a domain
    error comes from controlplane/web.py, the same for both."""

    def answer(request: Request, status: int, detail: str, **extra: object) -> Response:
        title = HTTPStatus(status).phrase
        if page is not None and not for_machines(request):
            return page(request, status, title, detail)
        return problem(status, title, detail, **extra)

    async def _domain(request: Request, exc: Exception) -> Response:
        # Rejected and some conflicts (NotOwner: each refused instance) name their items, so
        # a client can fix or drop just those.
        errors = getattr(exc, "errors", None)
        extra = {"errors": errors} if errors or isinstance(exc, Rejected) else {}
        return answer(request, status_of(exc), str(exc), **extra)

    for kind in DOMAIN_ERRORS:
        app.add_exception_handler(kind, _domain)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        response = answer(request, exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def _store_busy(request: Request, exc: Exception) -> Response:
        # Lock contention is temporary: a 503 the client retries, never a 500. Any other
        # store failure stays a server error.
        if not is_contention(exc):
            raise exc
        return busy(request)

    app.add_exception_handler(OperationalError, _store_busy)
    app.add_exception_handler(psycopg.OperationalError, _store_busy)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "reason": err["msg"]} for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        if page is not None and not for_machines(request):
            return page(request, 422, "Invalid request", detail)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        # Starlette logs the exception after this answer; the answer names no internals.
        detail = "the server failed to answer this request; the failure is in its log"
        return answer(request, 500, detail)
