"""POST /api/v1/webhooks/alertmanager: alerts from Alertmanager or Grafana become events.

Outside the API's own authentication (an Alertmanager holds no coreplane token): the
caller sends the webhook token (COREPLANE_WEBHOOKS__ALERTMANAGER_TOKEN) as a bearer, or
an admin/operator API token."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from pydantic import ValidationError

from controlplane.api.deps import RANK, authenticate, read_body
from controlplane.clock import utcnow
from controlplane.errors import Rejected, TooLarge, Unreadable
from controlplane.ops.alerts import Intake, chunks, record_alerts
from controlplane.schemas.webhooks import AlertmanagerPayloadIn, WebhookResult

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
_bearer = HTTPBearer(auto_error=False, description="The webhook token, or an operator API token.")

ALERTS = Counter(
    "coreplane_webhook_alerts_total",
    "Alerts received on the Alertmanager webhook, by sender and outcome (stored or deduplicated).",
    ["source", "outcome"],
)


def _inlined(schema: dict) -> dict:
    """The model's JSON schema with its ``$defs`` put in place: the route parses its own body,
    so the OpenAPI document has no component for the refs to point to."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if str(node.get("$ref", "")).startswith("#/$defs/"):
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: walk(value) for key, value in node.items()}
        return [walk(value) for value in node] if isinstance(node, list) else node

    return walk(schema)


_PAYLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inlined(AlertmanagerPayloadIn.model_json_schema())}},
    }
}


def webhook_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> str:
    """Who posts: "webhook" for the webhook token, else an operator's (or admin's) name."""
    expected = request.app.state.settings.webhooks.alertmanager_token
    if not expected:
        raise HTTPException(
            503,
            "the Alertmanager webhook is not configured: set COREPLANE_WEBHOOKS__ALERTMANAGER_TOKEN "
            "and give Alertmanager the same token (webhook_config http_config.authorization)",
        )
    if credentials is not None and hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        return "webhook"
    principal = authenticate(request, credentials)  # 401 for a missing or unknown token
    if principal.kind == "agent" or RANK[principal.role] < RANK["operator"]:
        raise HTTPException(403, "posting alerts needs the webhook token or the operator role")
    return principal.name


def _parse(body: bytes) -> AlertmanagerPayloadIn:
    try:
        return AlertmanagerPayloadIn.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {"kind": "body", "index": None, "field": ".".join(str(p) for p in e["loc"]) or None,
             "reason": e["msg"]}
            for e in exc.errors(include_url=False)
        ]  # fmt: skip
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Unreadable("the body is not valid JSON", errors) from None
        fields = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        raise Rejected(
            f"not an Alertmanager (version 4) or Grafana webhook payload: {fields}", errors
        ) from None


@router.post(
    "/alertmanager",
    response_model=WebhookResult,
    summary="Alerts from Alertmanager (payload version 4) or Grafana's webhook contact point",
    description="Each alert whose status (firing or resolved) changed for its fingerprint is "
    "stored as an event of type `alert` and wakes the policy engine; a resend of a known "
    "status is counted as deduplicated and stores nothing.",
    openapi_extra=_PAYLOAD_SCHEMA,
    dependencies=[Depends(webhook_caller)],
    responses={
        400: {"description": "The body is not JSON"},
        413: {
            "description": "Body over COREPLANE_WEBHOOKS__MAX_BODY_BYTES, or more alerts than "
            "COREPLANE_WEBHOOKS__MAX_ALERTS"
        },
        503: {
            "description": "No webhook token is configured, or the store is busy (retry after Retry-After)"
        },
    },
)
async def alertmanager_webhook(request: Request) -> WebhookResult:
    limits = request.app.state.settings.webhooks
    body = await read_body(request, limits.max_body_bytes)
    payload = _parse(body)
    if len(payload.alerts) > limits.max_alerts:
        raise TooLarge(
            f"the payload holds {len(payload.alerts)} alerts, over the cap of {limits.max_alerts} per "
            f"request: send them in several requests (Alertmanager: set max_alerts in the webhook_config), "
            f"or raise COREPLANE_WEBHOOKS__MAX_ALERTS",
            [
                {
                    "kind": "body",
                    "index": None,
                    "field": "alerts",
                    "reason": f"at most {limits.max_alerts} alerts",
                }
            ],
            reason="too_many_items",
        )
    intake = await run_in_threadpool(_store, request, payload)
    ALERTS.labels(payload.source, "stored").inc(intake.stored)
    ALERTS.labels(payload.source, "deduplicated").inc(intake.deduplicated)
    return WebhookResult(
        source=payload.source,
        received=len(payload.alerts),
        stored=intake.stored,
        deduplicated=intake.deduplicated,
    )


def _store(request: Request, payload: AlertmanagerPayloadIn) -> Intake:
    """One short write transaction per chunk (ops/alerts.py says why that is safe)."""
    stored = deduplicated = 0
    for pairs in chunks(payload):
        with request.app.state.sessionmaker.begin() as session:
            intake = record_alerts(session, payload, pairs, now=utcnow())
        stored, deduplicated = stored + intake.stored, deduplicated + intake.deduplicated
    return Intake(stored=stored, deduplicated=deduplicated)
