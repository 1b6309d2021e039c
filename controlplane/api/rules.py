"""Policy rules over HTTP: read and replace the YAML document (validated, versioned, with
errors that point at the line), and read the record of evaluations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.api.deps import ADMIN, VIEWER, Principal
from controlplane.clock import utcnow
from controlplane.ops import rules as rules_ops
from controlplane.policy import rules as rules_mod
from controlplane.policy.engine import stored_rules
from controlplane.store.models import RuleEvaluation
from controlplane.web import DB_SESSION

router = APIRouter(prefix="/rules", tags=["rules"])


class RulesPut(BaseModel):
    yaml: str = Field(max_length=rules_mod.MAX_DOCUMENT, description="The whole rule list, as YAML.")
    version: int = Field(
        ge=0, description="The version you read (0 replaces the shipped playbooks); 409 if stale."
    )


def _document(version: int, text: str) -> dict[str, Any]:
    """The stored document; ``problems`` lists why its rules do not validate (one saved before
    today's checks), in which case ``rules`` is empty: the engine acts on none of them."""
    try:
        rules, problems = rules_mod.dump_rules(rules_mod.parse_rules(text)), []
    except rules_mod.RuleError as exc:
        rules, problems = [], exc.problems
    return {"version": version, "yaml": text, "rules": rules, "problems": problems}


@router.get("", dependencies=[Depends(VIEWER)], summary="The rules in force")
def read_rules(session: Session = DB_SESSION) -> dict[str, Any]:
    return _document(*stored_rules(session))


@router.put("", summary="Replace the rules (validated first)")
def replace_rules(
    rules_in: RulesPut, who: Principal = Depends(ADMIN), session: Session = DB_SESSION
) -> dict[str, Any]:
    row = rules_ops.replace_rules(
        session,
        text=rules_in.yaml,
        expected_version=rules_in.version,
        actor=f"{who.kind}:{who.name}",
        updated_by=who.name,
        now=utcnow(),
    )
    return _document(row.version, rules_in.yaml)


@router.get("/evaluations", dependencies=[Depends(VIEWER)], summary="Why rules fired or were held back")
def evaluations(
    session: Session = DB_SESSION,
    rule: str | None = None,
    outcome: str | None = Query(None, description="fired, suppressed, dry_run or error"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    query = select(RuleEvaluation).order_by(RuleEvaluation.at.desc()).limit(limit)
    if rule:
        query = query.where(RuleEvaluation.rule == rule)
    if outcome:
        query = query.where(RuleEvaluation.outcome == outcome)
    return [
        {
            "rule": e.rule,
            "at": e.at.isoformat() + "Z",
            "outcome": e.outcome,
            "reason": e.reason,
            "action_id": str(e.action_id) if e.action_id else None,
            "context": e.context,
        }
        for e in session.scalars(query)
    ]
