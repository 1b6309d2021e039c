"""Replacing the policy rules: the one use case behind PUT /api/v1/rules and the console's
Rules page (validated, versioned, audited). The rules' limits (document size, nesting,
template cost) are domain facts in controlplane/policy/rules.py. Session first, never commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from controlplane.errors import Rejected
from controlplane.ops.settings import put_audited
from controlplane.policy.engine import RULES_SETTING
from controlplane.policy.rules import Rule, RuleError, parse_rules
from controlplane.store.models import InfrastructureSetting


class RulesRefused(Rejected):
    """The rules do not validate; ``problems`` lists each as {path, message, line}."""

    def __init__(self, problems: list[dict]) -> None:
        errors = [
            {"kind": "body", "index": None, "field": p["path"], "reason": p["message"], "line": p["line"]}
            for p in problems
        ]
        super().__init__(f"the rules were refused ({len(problems)} problem(s)); nothing changed", errors)
        self.problems = problems


def check_rules(text: str) -> list[Rule]:
    """The rules in ``text``, or RulesRefused naming each problem and its line."""
    try:
        return parse_rules(text)
    except RuleError as exc:
        raise RulesRefused(exc.problems) from None


def replace_rules(
    session: Session,
    *,
    text: str,
    expected_version: int,
    actor: str,
    updated_by: str,
    now: datetime,
    client: str | None = None,
) -> InfrastructureSetting:
    """Replace the whole rule list if it is still at ``expected_version`` (0 replaces the
    shipped playbooks); RulesRefused before anything is written, Conflict when stale."""
    check_rules(text)
    return put_audited(session, setting_type=RULES_SETTING, value={"yaml": text},
                       expected_version=expected_version, action="rules.replace", actor=actor,
                       updated_by=updated_by, now=now, client=client)  # fmt: skip
