"""Pydantic models the messaging tests name in their schemas settings
("tests.integration.messaging.schemas_models:Order")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Line(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    lines: list[Line] = Field(min_length=1)


NOT_A_MODEL = {"id": "int"}
