"""Topology and queue management: the definition's diff and apply, declare, delete, move and
policies. Reads answer at once from the broker; every change is an action (target
"rabbitmq", controlplane/messaging/operations.py) that the leader carries out, so it is
audited and the console can preview it. Purging a queue is the dead letters' (messaging_dead).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.actions import ActionOut, request_action
from controlplane.api.deps import OPERATOR, VIEWER, Principal, read_body
from controlplane.errors import NotFound, Rejected, Unreadable
from controlplane.messaging import operations, topology
from controlplane.messaging.connection import MessagingRuntime, require
from controlplane.messaging.definition import expand, parse
from controlplane.messaging.management import Management
from controlplane.web import DB_SESSION

router = APIRouter(prefix="/messaging", tags=["messaging"])

MAX_DEFINITION_BYTES = 1024 * 1024
QueueName = Annotated[str, Path(min_length=1, max_length=operations.MAX_NAME, description="A queue.")]
PolicyName = Annotated[str, Path(min_length=1, max_length=operations.MAX_NAME, description="A policy.")]


class OperationIn(BaseModel):
    reason: str | None = Field(None, max_length=2000, description="Why (kept in the audit log).")


class ApplyIn(OperationIn):
    prune: bool = Field(False, description="Also remove what the definition lacks (never the tasks').")
    force: bool = Field(False, description="Recreate or prune a queue even when it holds messages.")
    definition: dict[str, Any] | None = Field(
        None, description="A definition to apply; the settings' by default."
    )


class DeclareIn(OperationIn):
    queue: dict[str, Any] = Field(description="One queue in the definition's format.")
    bindings: list[dict[str, Any]] = Field(
        default_factory=list, max_length=operations.MAX_DECLARE_BINDINGS, description="Its bindings."
    )


class DeleteIn(OperationIn):
    if_empty: bool = Field(False, description="Only if it holds no message.")


class MoveIn(OperationIn):
    destination: str = Field(min_length=1, max_length=operations.MAX_NAME)
    limit: int = Field(100, ge=1, le=operations.MAX_MOVE, description="Messages at most, oldest first.")


class PolicyIn(OperationIn):
    pattern: str = Field(min_length=1, max_length=operations.MAX_PATTERN, description="A regular expression.")
    definition: dict[str, Any] = Field(description="Policy keys: max-length, message-ttl, overflow, ...")
    apply_to: Literal["queues", "exchanges", "all"] = "queues"
    priority: int = Field(0, ge=0, le=operations.MAX_POLICY_PRIORITY)


def _runtime(request: Request) -> MessagingRuntime:
    return require(request.app.state.messaging)


def _operation(session: Session, who: Principal, kind: str, params: dict, reason: str | None) -> ActionOut:
    return request_action(session, who, kind, operations.TARGET, params, reason)


def _queue(runtime: MessagingRuntime, name: str) -> dict[str, Any]:
    with Management.of(runtime) as api:
        return api.queue(name)


# -- the topology ------------------------------------------------------------------------


@router.get("/topology", dependencies=[Depends(VIEWER)])
def read_topology(request: Request) -> dict[str, Any]:
    """The settings' definition, what it expands to, and the diff against the broker."""
    runtime = _runtime(request)
    expanded = expand(runtime.definition, runtime.settings.messaging.retry)
    return {
        "definition": runtime.definition.model_dump(),
        "expanded": [d.model_dump() for d in expanded],
        "diff": topology.plan(runtime, runtime.definition).to_dict(),
    }


@router.post("/topology/apply", status_code=202, response_model=ActionOut)
def apply_topology(
    body: ApplyIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    params: dict[str, Any] = {"prune": body.prune, "force": body.force}
    if body.definition is not None:
        params["definition"] = body.definition
    return _operation(session, who, "mq.apply", params, body.reason)


@router.post("/definition/check", dependencies=[Depends(VIEWER)])
async def check_definition(request: Request) -> dict[str, Any]:
    """A definition (the body) checked, expanded and diffed against the broker; 422 naming
    the first malformed field."""
    runtime = _runtime(request)
    raw = await read_body(request, MAX_DEFINITION_BYTES)
    try:
        document = json.loads(raw)
    except ValueError:
        raise Unreadable("the body is not JSON: send a definition object") from None
    if not isinstance(document, dict):
        raise Rejected.field(
            "the definition must be a JSON object", "definition", "not an object", kind="body"
        )
    definition = parse(document, field="definition")
    expanded = expand(definition, runtime.settings.messaging.retry)
    # The diff reads the management API: off the event loop.
    found = await asyncio.to_thread(topology.plan, runtime, definition)
    return {"expanded": [d.model_dump() for d in expanded], "diff": found.to_dict()}


# -- queues ------------------------------------------------------------------------------


@router.post("/queues", status_code=202, response_model=ActionOut)
def declare_queue(
    body: DeclareIn, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    params = {"queue": body.queue, "bindings": body.bindings}
    return _operation(session, who, "mq.declare", params, body.reason)


@router.post("/queues/{name}/delete", status_code=202, response_model=ActionOut)
def delete_queue(
    request: Request,
    name: QueueName,
    body: DeleteIn | None = None,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    body = body or DeleteIn()
    _queue(_runtime(request), name)  # NotFound: 404 before any action is made
    return _operation(session, who, "mq.delete", {"queue": name, "if_empty": body.if_empty}, body.reason)


@router.post("/queues/{name}/move", status_code=202, response_model=ActionOut)
def move_messages(
    request: Request,
    name: QueueName,
    body: MoveIn,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    runtime = _runtime(request)
    _queue(runtime, name)
    try:
        _queue(runtime, body.destination)
    except NotFound:
        raise Rejected.field(
            f"destination: no queue {body.destination!r} on the broker",
            "destination",
            "unknown queue",
            kind="body",
        ) from None
    params = {"source": name, "destination": body.destination, "limit": body.limit}
    return _operation(session, who, "mq.move", params, body.reason)


# -- policies ----------------------------------------------------------------------------


@router.get("/policies", dependencies=[Depends(VIEWER)])
def list_policies(request: Request) -> list[dict[str, Any]]:
    with Management.of(_runtime(request)) as api:
        return api.policies()


@router.get("/policies/{name}", dependencies=[Depends(VIEWER)])
def read_policy(request: Request, name: PolicyName) -> dict[str, Any]:
    with Management.of(_runtime(request)) as api:
        return api.policy(name)


@router.put("/policies/{name}", status_code=202, response_model=ActionOut)
def set_policy(
    request: Request,
    name: PolicyName,
    body: PolicyIn,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    _runtime(request)
    params = {"name": name, "pattern": body.pattern, "definition": body.definition,
              "apply_to": body.apply_to, "priority": body.priority}  # fmt: skip
    return _operation(session, who, "mq.policy", params, body.reason)


@router.delete("/policies/{name}", status_code=202, response_model=ActionOut)
def delete_policy(
    request: Request,
    name: PolicyName,
    body: OperationIn | None = None,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    read_policy(request, name)  # NotFound: 404 before any action is made
    return _operation(session, who, "mq.policy_delete", {"name": name}, body.reason if body else None)
