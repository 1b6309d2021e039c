"""Actions over HTTP: operators create, list, read and cancel them; agents long-poll for
theirs, say when they start one and post its result."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.actions import lifecycle, plans
from controlplane.api.deps import AGENT_OR_ADMIN, OPERATOR, VIEWER, Principal
from controlplane.clock import utcnow
from controlplane.errors import NotFound
from controlplane.notify import ACTIONS, NOTIFIER
from controlplane.ops import actions as ops_actions
from controlplane.ops.actions import KINDS, ActionRequest
from controlplane.ops.actions import create_action as create
from controlplane.schemas.ingest import Text, UtcDatetime
from controlplane.store.models import Action, RuleEvaluation
from controlplane.web import DB_SESSION, READ_SESSION

router = APIRouter(tags=["actions"])


class ActionCreate(BaseModel):
    kind: str = Field(min_length=1, max_length=50, description=f"One of: {', '.join(KINDS)}.")
    target: Text = Field(min_length=1, max_length=100, description="The catalog service it acts on.")
    params: dict[str, Any] = Field(default_factory=dict)
    agent: Text | None = Field(
        None,
        max_length=100,
        description="For agent actions: the agent that carries it out; by default the agent that watches "
        "the target (and params.instance, when given).",
    )
    reason: Text | None = Field(None, max_length=2000)
    idempotency_key: Text | None = Field(None, max_length=100, description="The same key twice = one action.")
    max_attempts: int = Field(1, ge=1, le=10, description="Tries before the action fails.")
    timeout_s: float | None = Field(None, gt=0, le=86400, description="Seconds from dispatch to result.")


class AuditOut(BaseModel):
    at: UtcDatetime
    actor: str
    from_state: str | None
    to_state: str
    note: str | None


class ActionOut(BaseModel):
    id: uuid.UUID
    kind: str
    target: str
    params: dict[str, Any] | None
    state: str
    requested_by: str
    reason: str | None
    rule: str | None = None
    parent_id: uuid.UUID | None = None
    attempts: int = 0
    max_attempts: int = 1
    timeout_s: float = 60.0
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    result: dict[str, Any] | None
    links: dict[str, Any] | None = None


class ActionDetail(ActionOut):
    audit: list[AuditOut]
    children: list[ActionOut]
    evaluations: list[dict[str, Any]] = Field(description="The rule evaluation that created it, if any.")


class ActionResultIn(BaseModel):
    ok: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error: Text | None = Field(None, max_length=4000)

    @field_validator("output")
    @classmethod
    def _storable(cls, output: dict[str, Any]) -> dict[str, Any]:
        # What an agent's actuator printed is stored as JSON: the store must be able to hold it.
        text = json.dumps(output, allow_nan=False)
        if "\\u0000" in text:
            raise ValueError("NUL bytes cannot be stored")
        if len(text) > plans.MAX_PARAMS_BYTES:
            raise ValueError(f"{len(text)} bytes of JSON, over {plans.MAX_PARAMS_BYTES}")
        return output


def _out(action: Action) -> ActionOut:
    return ActionOut.model_validate(action, from_attributes=True)


def request_action(
    session: Session, who: Principal, kind: str, target: str, params: dict, reason: str | None
) -> ActionOut:
    """An area's operation asked for over the API (a purge, a replay, ...), made an action
    (checked, stored, audited) like any other; answered 202 by the route."""
    wanted = ActionRequest(kind=kind, target=target, params=params, reason=reason or f"{kind} over the API")
    action, _created = create(session, wanted, actor=f"{who.kind}:{who.name}", now=utcnow())
    return _out(action)


@router.post("/actions", status_code=201, response_model=ActionOut)
def create_action(
    request: Request,
    action_in: ActionCreate,
    who: Principal = Depends(OPERATOR),
    session: Session = DB_SESSION,
) -> ActionOut:
    wanted = ActionRequest(
        **action_in.model_dump(exclude={"timeout_s"}),
        timeout_s=action_in.timeout_s or request.app.state.settings.control.action_timeout_s,
    )
    action, _created = create(session, wanted, actor=f"{who.kind}:{who.name}", now=utcnow())
    return _out(action)


@router.get("/actions", response_model=list[ActionOut], dependencies=[Depends(VIEWER)])
def list_actions(
    session: Session = READ_SESSION,
    state: str | None = Query(None, description="pending, dispatched, running, succeeded, failed, cancelled"),
    kind: str | None = None,
    rule: str | None = None,
    target: str | None = None,
    top_level: bool = Query(True, description="Leave out the steps of plans (children)."),
    limit: int = Query(50, ge=1, le=500),
) -> list[ActionOut]:
    query = select(Action).order_by(Action.created_at.desc()).limit(limit)
    for column, value in (
        (Action.state, state),
        (Action.kind, kind),
        (Action.rule, rule),
        (Action.target, target),
    ):
        if value is not None:
            query = query.where(column == value)
    if top_level:
        query = query.where(Action.parent_id.is_(None))
    return [_out(a) for a in session.scalars(query)]


@router.get("/actions/{action_id}", response_model=ActionDetail, dependencies=[Depends(VIEWER)])
def read_action(action_id: uuid.UUID, session: Session = READ_SESSION) -> ActionDetail:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    evaluations = session.scalars(select(RuleEvaluation).where(RuleEvaluation.action_id == action_id))
    return ActionDetail(
        **_out(action).model_dump(),
        audit=[AuditOut.model_validate(a, from_attributes=True) for a in lifecycle.audit(session, action_id)],
        children=[_out(c) for c in lifecycle.children(session, action)],
        evaluations=[
            {"rule": e.rule, "at": e.at.isoformat() + "Z", "outcome": e.outcome, "reason": e.reason}
            for e in evaluations
        ],
    )


@router.post("/actions/{action_id}/cancel", response_model=ActionOut)
def cancel_action(
    action_id: uuid.UUID, who: Principal = Depends(OPERATOR), session: Session = DB_SESSION
) -> ActionOut:
    action = ops_actions.cancel_action(
        session, action_id, actor=f"{who.kind}:{who.name}", now=utcnow(), note="cancelled over the API"
    )
    return _out(action)


def _claim(request: Request, agent_id: uuid.UUID) -> list[ActionOut]:
    # Waiting is reading: only a look that finds work opens a write transaction, so a long
    # poll never queues for (or times out on) SQLite's write lock while there is nothing to do.
    with request.app.state.read_sessionmaker.begin() as session:
        if not lifecycle.has_due(session, agent_id, now=utcnow()):
            return []
    with request.app.state.sessionmaker.begin() as session:
        return [_out(a) for a in lifecycle.claim(session, agent_id, now=utcnow())]


@router.get("/agents/{agent_id}/actions", response_model=list[ActionOut])
async def poll_actions(
    request: Request,
    agent_id: uuid.UUID,
    wait: float = Query(0, ge=0, le=60, description="Seconds to wait for an action (long poll)."),
    who: Principal = Depends(AGENT_OR_ADMIN),
) -> list[ActionOut]:
    if who.kind == "agent" and who.agent_id != agent_id:
        raise HTTPException(403, "an agent may only poll its own actions")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        seen = NOTIFIER.generation(ACTIONS)
        actions = await asyncio.to_thread(_claim, request, agent_id)
        left = deadline - loop.time()
        if actions or left <= 0 or request.app.state.stopping or await request.is_disconnected():
            return actions
        # Woken at once when an action is created (here or, over NOTIFY, in another process);
        # the periodic look also catches retries whose backoff has passed.
        await NOTIFIER.wait_async(ACTIONS, seen, min(left, 1.0))


def _agent_action(session: Session, action_id: uuid.UUID, who: Principal) -> Action:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    if who.kind == "agent" and action.agent_id != who.agent_id:
        raise HTTPException(403, "this action belongs to another agent")
    return action


@router.post("/actions/{action_id}/start", response_model=ActionOut)
def start_action(
    action_id: uuid.UUID, who: Principal = Depends(AGENT_OR_ADMIN), session: Session = DB_SESSION
) -> ActionOut:
    action = _agent_action(session, action_id, who)
    if action.state != "dispatched":
        raise HTTPException(409, f"the action is {action.state}; only a dispatched action can start")
    lifecycle.move(session, action, "running", actor=f"{who.kind}:{who.name}", now=utcnow())
    return _out(action)


@router.post("/actions/{action_id}/result", response_model=ActionOut)
def post_result(
    action_id: uuid.UUID,
    result_in: ActionResultIn,
    who: Principal = Depends(AGENT_OR_ADMIN),
    session: Session = DB_SESSION,
) -> ActionOut:
    action = _agent_action(session, action_id, who)
    if action.state not in ("dispatched", "running"):
        raise HTTPException(409, f"the action is {action.state}; a result is not expected")
    lifecycle.finish(
        session,
        action,
        ok=result_in.ok,
        output=result_in.output,
        error=result_in.error,
        actor=f"{who.kind}:{who.name}",
        now=utcnow(),
    )
    return _out(action)
