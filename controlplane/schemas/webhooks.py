"""What Alertmanager (webhook payload version 4) and Grafana's unified alerting post to
POST /api/v1/webhooks/alertmanager, and what they get back.

Grafana's webhook sends the same shape with a few more fields (orgId, state, title,
message; per alert silenceURL, dashboardURL, panelURL, values): unknown fields are
ignored on both, so a newer sender's additions do not break the intake."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

LabelSet = Annotated[dict[str, str], Field(max_length=200)]


def _instant(value: datetime | None) -> datetime | None:
    """Naive UTC, as the store keeps times; None for Alertmanager's "0001-01-01T00:00:00Z",
    which means "has not ended"."""
    if value is None or value.year <= 1:
        return None
    try:
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    except OverflowError:
        raise ValueError("the time is out of range") from None


Instant = Annotated[datetime | None, AfterValidator(_instant)]


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: LabelSet = Field(default_factory=dict)
    startsAt: Instant = None  # the wire names, as Alertmanager spells them
    endsAt: Instant = None
    generatorURL: str | None = Field(None, max_length=4096)
    fingerprint: str | None = Field(None, max_length=64)
    # Grafana only: the query values that made the rule fire.
    values: dict[str, float | None] | None = None
    valueString: str | None = Field(None, max_length=4096)


class AlertmanagerPayloadIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str | None = Field(None, max_length=20, description='"4" from Alertmanager, "1" from Grafana.')
    status: Literal["firing", "resolved"] | None = None
    receiver: str | None = Field(None, max_length=500)
    groupKey: str | None = Field(None, max_length=4096)
    externalURL: str | None = Field(None, max_length=4096)
    truncatedAlerts: int | None = Field(None, ge=0)
    orgId: int | None = None  # Grafana only
    alerts: list[AlertIn] = Field(max_length=10_000)

    @property
    def source(self) -> str:
        """Who sent it, told apart by the fields only Grafana sends."""
        grafana = self.orgId is not None or any(a.values is not None or a.valueString for a in self.alerts)
        return "grafana" if grafana else "alertmanager"


class WebhookResult(BaseModel):
    source: Literal["alertmanager", "grafana"]
    received: int = Field(description="Alerts in the payload.")
    stored: int = Field(description="Alerts whose status changed: one event stored for each.")
    deduplicated: int = Field(description="Alerts whose status was already known (a resend): nothing stored.")
