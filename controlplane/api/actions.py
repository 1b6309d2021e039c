"""Actions as agents see them for now: operators create one for a named agent, the agent
long-polls for it and posts its result. (The policy engine and full lifecycle build on this.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlplane.api.deps import AGENT_OR_ADMIN, OPERATOR, VIEWER, Principal, db_session
from controlplane.errors import NotFound, Rejected
from controlplane.schemas.ingest import UtcDatetime
from controlplane.store.models import Action, Agent

router = APIRouter(tags=["actions"])


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ActionCreate(BaseModel):
    kind: str = Field(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_.]*$")
    target: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    agent: str = Field(min_length=1, max_length=100, description="The agent that carries it out.")
    reason: str | None = Field(None, max_length=2000)
    idempotency_key: str | None = Field(None, max_length=100)


class ActionOut(BaseModel):
    id: uuid.UUID
    kind: str
    target: str
    params: dict[str, Any] | None
    state: str
    requested_by: str
    reason: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    result: dict[str, Any] | None


class ActionResultIn(BaseModel):
    ok: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(None, max_length=4000)


@router.post("/actions", status_code=201, response_model=ActionOut)
def create_action(
    action_in: ActionCreate, who: Principal = Depends(OPERATOR), session: Session = Depends(db_session)
) -> ActionOut:
    if action_in.idempotency_key:
        existing = session.scalars(
            select(Action).where(Action.idempotency_key == action_in.idempotency_key)
        ).first()
        if existing is not None:
            return ActionOut.model_validate(existing, from_attributes=True)
    agent = session.scalars(
        select(Agent).where(Agent.name == action_in.agent, Agent.revoked.is_(False))
    ).first()
    if agent is None:
        raise Rejected.field(
            f"no registered agent named {action_in.agent!r}",
            "agent",
            "unknown agent",
            kind="body",
        )
    now = _now()
    action = Action(
        kind=action_in.kind, target=action_in.target, params=action_in.params, state="pending",
        idempotency_key=action_in.idempotency_key, requested_by=who.name, reason=action_in.reason,
        agent_id=agent.id, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(action)
    session.flush()
    return ActionOut.model_validate(action, from_attributes=True)


@router.get("/actions/{action_id}", response_model=ActionOut, dependencies=[Depends(VIEWER)])
def read_action(action_id: uuid.UUID, session: Session = Depends(db_session)) -> ActionOut:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    return ActionOut.model_validate(action, from_attributes=True)


def _claim(request: Request, agent_id: uuid.UUID) -> list[ActionOut]:
    with request.app.state.sessionmaker.begin() as session:
        query = (
            select(Action)
            .where(Action.agent_id == agent_id, Action.state == "pending")
            .order_by(Action.created_at)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        actions = list(session.scalars(query))
        for action in actions:
            action.state, action.updated_at = "dispatched", _now()
        session.flush()
        return [ActionOut.model_validate(a, from_attributes=True) for a in actions]


@router.get("/agents/{agent_id}/actions", response_model=list[ActionOut])
async def poll_actions(
    request: Request,
    agent_id: uuid.UUID,
    wait: float = Query(0, ge=0, le=60, description="Seconds to wait for an action (long poll)."),
    who: Principal = Depends(AGENT_OR_ADMIN),
) -> list[ActionOut]:
    if who.kind == "agent" and who.agent_id != agent_id:
        raise HTTPException(403, "an agent may only poll its own actions")
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        actions = await asyncio.to_thread(_claim, request, agent_id)
        if actions or asyncio.get_running_loop().time() >= deadline:
            return actions
        await asyncio.sleep(0.25)


@router.post("/actions/{action_id}/result", response_model=ActionOut)
def post_result(
    action_id: uuid.UUID,
    result_in: ActionResultIn,
    who: Principal = Depends(AGENT_OR_ADMIN),
    session: Session = Depends(db_session),
) -> ActionOut:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    if who.kind == "agent" and action.agent_id != who.agent_id:
        raise HTTPException(403, "this action belongs to another agent")
    if action.state not in ("dispatched", "running"):
        raise HTTPException(409, f"the action is {action.state}; a result is not expected")
    session.execute(
        update(Action)
        .where(Action.id == action_id)
        .values(
            state="succeeded" if result_in.ok else "failed",
            result={"output": result_in.output, "error": result_in.error},
            updated_at=_now(),
        )
    )
    session.refresh(action)
    return ActionOut.model_validate(action, from_attributes=True)
