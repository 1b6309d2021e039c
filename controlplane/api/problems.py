"""RFC 9457 problem+json for every error, with a reason a person can act on."""

from __future__ import annotations

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.errors import Conflict, NotFound, Rejected

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


def install(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def _rejected(request: Request, exc: Rejected) -> JSONResponse:
        from http import HTTPStatus

        return problem(exc.status, HTTPStatus(exc.status).phrase, str(exc), errors=exc.errors)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not Found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        # Some conflicts name their items (NotOwner: each refused instance), so a client can
        # drop just those and send the rest.
        errors = getattr(exc, "errors", None)
        return problem(409, "Conflict", str(exc), **({"errors": errors} if errors else {}))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        from http import HTTPStatus

        title = HTTPStatus(exc.status_code).phrase
        response = problem(exc.status_code, title, str(exc.detail))
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
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "reason": err["msg"]} for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)
