"""What Alertmanager (webhook payload version 4) and Grafana's unified alerting post to
POST /api/v1/webhooks/alertmanager, and what they get back.

Grafana's webhook sends the same shape with a few more fields (orgId, state, title,
message; per alert silenceURL, dashboardURL, panelURL, values): unknown fields are
ignored on both, so a newer sender's additions do not break the intake."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

ALERTNAME_MAX = 200  # the alerts table's alertname column
LABEL_NAME_MAX = 200
LABEL_VALUE_MAX = 4096


def _storable(value: str) -> str:
    """Text both stores can hold: PostgreSQL's text and jsonb take neither NUL nor a lone
    UTF-16 surrogate (a JSON escape like \\ud800 with no pair), and would answer a 500."""
    if "\x00" in value:
        raise ValueError("NUL bytes cannot be stored")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("a lone UTF-16 surrogate (\\ud800-\\udfff) is not text that can be stored") from None
    return value


# Storable text of a bounded length, one alias per bound (a type checker needs them spelt out).
LabelName = Annotated[str, Field(min_length=1, max_length=LABEL_NAME_MAX), AfterValidator(_storable)]
LabelValue = Annotated[str, Field(min_length=0, max_length=LABEL_VALUE_MAX), AfterValidator(_storable)]
_Text20 = Annotated[str, Field(min_length=0, max_length=20), AfterValidator(_storable)]
_Text64 = Annotated[str, Field(min_length=0, max_length=64), AfterValidator(_storable)]
_Text500 = Annotated[str, Field(min_length=0, max_length=500), AfterValidator(_storable)]
_Text4096 = Annotated[str, Field(min_length=0, max_length=4096), AfterValidator(_storable)]
LabelSet = Annotated[dict[LabelName, LabelValue], Field(max_length=200)]


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
    generatorURL: _Text4096 | None = None
    fingerprint: _Text64 | None = None  # the alerts table's key column
    # Grafana only: the query values that made the rule fire (JSON has no NaN or Infinity).
    values: dict[LabelName, Annotated[float, Field(allow_inf_nan=False)] | None] | None = Field(
        None, max_length=200
    )
    valueString: _Text4096 | None = None

    @field_validator("labels")
    @classmethod
    def _alertname_fits(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels.get("alertname", "")) > ALERTNAME_MAX:
            raise ValueError(f"the alertname label has more than {ALERTNAME_MAX} characters")
        return labels


class AlertmanagerPayloadIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: _Text20 | None = Field(None, description='"4" from Alertmanager, "1" from Grafana.')
    status: Literal["firing", "resolved"] | None = None
    receiver: _Text500 | None = None
    groupKey: _Text4096 | None = None
    externalURL: _Text4096 | None = None
    truncatedAlerts: int | None = Field(None, ge=0)
    orgId: int | None = None  # Grafana only
    # How many per request is a setting (COREPLANE_WEBHOOKS__MAX_ALERTS), checked by the route.
    alerts: list[AlertIn]

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
