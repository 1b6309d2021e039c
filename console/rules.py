"""The Rules page: the rules in force (YAML, a summary per rule, why they recently fired or were
held back), an editor for admins that saves exactly as the API does (validated, versioned,
audited), and a dry-run preview for operators of what rules would have done over the last hour."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.render import actor, client_address, render
from console.session import check_csrf, current_user, require_role
from controlplane import users
from controlplane.clock import utcnow
from controlplane.errors import Conflict, NotFound, Rejected
from controlplane.ops import rules as rules_ops
from controlplane.ops.settings import parse_version
from controlplane.policy import preview as preview_mod
from controlplane.policy.engine import RULES_SETTING, stored_rules
from controlplane.policy.rules import Rule, RuleError, parse_rules
from controlplane.store.models import RuleEvaluation
from controlplane.store.settings_store import get_setting
from controlplane.web import DB_SESSION

router = APIRouter(include_in_schema=False)
EVALUATIONS = 50


def _trigger_text(rule: Rule) -> str:
    t = rule.trigger
    if t.event is not None:
        e = t.event
        text = f"event {e.type}" + (f" on {e.service}" if e.service else "")
        text += (f" status {e.status}" if e.status else "") + (f" matching {e.match}" if e.match else "")
        return text + (f", held {e.for_s:g} s" if e.for_s else "")
    if t.metric is not None:
        m = t.metric
        text = f"{m.agg}({m.name}[{m.window_s:g}s]) {m.op} {m.threshold:g}"
        text += (f" on {m.service}" if m.service else "") + (f" {m.tags}" if m.tags else "")
        return text + (f" for {m.for_s:g} s" if m.for_s else "")
    a = t.absence
    assert a is not None  # a trigger is exactly one of event, metric or absence (the schema's check)
    return f"no {a.metric or 'metric'} from {a.service} for {a.for_s:g} s"


def _context(session: Session, role: str, text: str | None = None, version_read: str | None = None) -> dict:
    """The page as stored; with what was submitted (``text``, the ``version_read``) kept in the
    editor, so a corrected form still conflicts if someone saved in between."""
    version, stored = stored_rules(session)
    try:
        row = get_setting(session, setting_type=RULES_SETTING)
        changed = {"by": row.updated_by, "at": row.updated_at}
    except NotFound:
        changed = None
    try:
        rules, stored_problems = parse_rules(stored), []
    except RuleError as exc:  # stored under an older schema of the rules
        rules, stored_problems = [], exc.problems
    return {
        "version": version,
        "stored": stored,
        "text": stored if text is None else text,
        "version_read": version if version_read is None else version_read,
        "changed": changed,
        "rules": [(rule, _trigger_text(rule)) for rule in rules],
        "stored_problems": stored_problems,
        "evaluations": session.scalars(
            select(RuleEvaluation).order_by(RuleEvaluation.at.desc()).limit(EVALUATIONS)
        ).all(),
        "can_edit": role == "admin",
        "can_preview": users.RANK.get(role, 0) >= users.RANK["operator"],
        "problems": None,
        "message": None,
        "conflict": False,
        "preview": None,
    }


def _page(request: Request, context: dict, status: int = 200, block: str | None = None) -> Response:
    return render(request, "rules.html", context, block=block, status=status)


@router.get("/rules")
def rules_page(
    request: Request, role: str = Depends(require_role("viewer")), session: Session = DB_SESSION
) -> Response:
    return _page(request, _context(session, role), block="evaluations")


@router.post("/rules")
def save_rules(
    request: Request,
    text: str = Form("", alias="yaml"),
    version: str = Form(""),
    csrf: str = Form(""),
    role: str = Depends(require_role("admin")),
    session: Session = DB_SESSION,
) -> Response:
    """Validate, then replace the rules through the use case the API calls; audited."""
    check_csrf(request, csrf)
    context = _context(session, role, text, version)
    try:
        expected = parse_version(version)
        rules_ops.replace_rules(session, text=text, expected_version=expected, actor=actor(request),
                                updated_by=current_user(request), now=utcnow(),
                                client=client_address(request))  # fmt: skip
    except rules_ops.RulesRefused as exc:
        context["message"] = f"The rules were refused ({len(exc.problems)} problem(s)); nothing changed."
        context["problems"] = exc.problems
        return _page(request, context, 422)
    except Rejected as exc:
        context["message"] = f"{str(exc)[0].upper()}{str(exc)[1:]}."
        return _page(request, context, 422)
    except Conflict:  # someone saved in between: show theirs beside the kept text
        context["version_read"], context["conflict"] = context["version"], True
        context["message"] = (
            f"Someone saved version {context['version']} after you read version {expected}: "
            "nothing changed. Compare with it below; saving again replaces it with your text."
        )
        return _page(request, context, 409)
    return RedirectResponse("/rules", status_code=303)


@router.post("/rules/preview")
def preview_rules(
    request: Request,
    text: str = Form("", alias="yaml"),
    version: str = Form(""),
    csrf: str = Form(""),
    role: str = Depends(require_role("operator")),
) -> Response:
    """What the submitted rules would have done over the last hour; reads only."""
    check_csrf(request, csrf)
    # Its own session, closed without a commit: a preview cannot change anything.
    with request.app.state.sessionmaker() as session:
        context = _context(session, role, text, version or None)
        end = utcnow()
        try:
            rules = rules_ops.check_rules(text)
        except rules_ops.RulesRefused as exc:
            context["preview"] = _preview(end, problems=exc.problems)
            return _page(request, context, 422, block="preview")
        rows = preview_mod.replay(session, rules=rules, end=end)
        context["preview"] = _preview(end, rules=rules, rows=rows)
    return _page(request, context, block="preview")


def _preview(
    end: datetime,
    *,
    rules: list[Rule] | None = None,
    rows: list[preview_mod.PreviewRow] | None = None,
    problems: list[dict] | None = None,
    message: str | None = None,
) -> dict:
    by_rule: dict[str, list[preview_mod.PreviewRow]] = {rule.name: [] for rule in rules or []}
    for row in rows or []:
        by_rule[row.rule].append(row)
    return {
        "end": end,
        "start": end - timedelta(seconds=preview_mod.SPAN_S),
        "rules": [(rule, by_rule[rule.name]) for rule in rules or []],
        "problems": problems,
        "message": message,
        "bounds": {
            "step_s": preview_mod.STEP_S,
            "max_events": preview_mod.MAX_EVENTS,
            "max_points": preview_mod.MAX_POINTS,
            "action_s": preview_mod.ACTION_S,
        },
    }
