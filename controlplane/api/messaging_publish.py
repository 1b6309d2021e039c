"""Publishing from the API: POST /api/v1/messaging/publish (operator). The message goes
through the same Publisher applications use, so it meets the same checks (exchange, routing
key, size, schema) and the answer comes once the broker confirmed it."""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from controlplane.api.deps import OPERATOR, Principal, read_body
from controlplane.errors import Rejected, Unreadable
from controlplane.messaging.connection import MessagingRuntime, require
from controlplane.messaging.publisher import JSON, MAX_HEADERS_BYTES, Publisher

router = APIRouter(prefix="/messaging", tags=["messaging"])
_publisher_lock = threading.Lock()


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange: str = Field(max_length=255, description='An exchange of the definition, "" or amq.*.')
    routing_key: str = Field("", max_length=255, description="The message's routing key.")
    body: Any = Field(None, description="A JSON body (sent compactly as application/json).")
    body_base64: str | None = Field(None, description="Or raw bytes, base64-encoded, with content_type.")
    content_type: str = Field(JSON, max_length=255, description="The content type of body_base64.")
    headers: dict[str, Any] | None = Field(None, description="Message headers, plain JSON, 64 KiB at most.")
    priority: int | None = Field(None, description="0-255; a queue caps it at its x-max-priority.")
    expiration_ms: int | None = Field(None, description="Per-message TTL in milliseconds.")
    message_id: str | None = Field(None, max_length=255, description="A uuid4 hex one when absent.")
    correlation_id: str | None = Field(None, max_length=255)


class Published(BaseModel):
    message_id: str
    exchange: str
    routing_key: str


_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PublishIn.model_json_schema()}},
    }
}


@router.post(
    "/publish",
    status_code=201,
    response_model=Published,
    openapi_extra=_BODY_SCHEMA,
    responses={
        409: {"description": "No RabbitMQ is configured, or the broker refused the message (nack)"},
        413: {"description": "The body is over COREPLANE_MESSAGING__MAX_BODY_BYTES"},
        422: {"description": "Unknown exchange, bad routing key, unroutable, or the body fails its schema"},
        503: {"description": "RabbitMQ did not answer or did not confirm in time"},
    },
)
async def publish_message(request: Request, who: Principal = Depends(OPERATOR)) -> Published:
    runtime = require(request.app.state.messaging)
    limit = runtime.settings.messaging.max_body_bytes
    # base64 is 4/3 of the bytes it holds; headers and the other fields fit in the rest.
    message_in = _parse(await read_body(request, limit * 4 // 3 + MAX_HEADERS_BYTES + 16384))
    publisher = _publisher(request.app, runtime)
    message_id = await run_in_threadpool(
        publisher.publish,
        message_in.exchange,
        message_in.routing_key,
        _body(message_in),
        headers=message_in.headers,
        priority=message_in.priority,
        expiration_ms=message_in.expiration_ms,
        message_id=message_in.message_id,
        content_type=message_in.content_type,
        correlation_id=message_in.correlation_id,
    )
    return Published(message_id=message_id, exchange=message_in.exchange, routing_key=message_in.routing_key)


def _parse(raw: bytes) -> PublishIn:
    try:
        message_in = PublishIn.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Unreadable("the body is not valid JSON") from None
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise Rejected.field(f"{where}: {err['msg']}", where, err["msg"], kind="body") from None
    if ("body" in message_in.model_fields_set) == (message_in.body_base64 is not None):
        raise Rejected.field("give exactly one of body and body_base64", "body", "one of two", kind="body")
    return message_in


def _body(message_in: PublishIn) -> Any:
    if message_in.body_base64 is None:
        return message_in.body
    try:
        return base64.b64decode(message_in.body_base64, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected.field("body_base64: not base64", "body_base64", "not base64", kind="body") from None


def _publisher(app: FastAPI, runtime: MessagingRuntime) -> Publisher:
    """The process's Publisher for the API, built on first use (its schemas load then)."""
    with _publisher_lock:
        publisher = getattr(app.state, "messaging_publisher", None)
        if publisher is None or publisher.runtime is not runtime:
            publisher = app.state.messaging_publisher = Publisher(runtime)
        return publisher
