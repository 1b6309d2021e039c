"""Message schemas per room glob (``COREPLANE_REALTIME__SCHEMAS``): a published message's
``data`` must pass every JSON Schema (Draft 2020-12) whose glob matches its room; a room no
glob matches takes any JSON.

    [{"room": "chat:*", "json_schema": {"type": "object", "required": ["text"],
                                        "properties": {"text": {"type": "string", "maxLength": 2000}}}}]
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane import json_schemas
from controlplane.errors import TooLarge

MAX_SCHEMAS = 200
SETTING = "COREPLANE_REALTIME__SCHEMAS"


class RoomSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    room: str = Field(min_length=1, max_length=128, description='A glob over room names ("chat:*").')
    json_schema: dict[str, Any]


class RoomSchemas:
    """The loaded schemas; a bad one is refused at start, naming it."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        if len(entries) > MAX_SCHEMAS:
            detail = f"{SETTING}: {len(entries)} schemas, over the cap of {MAX_SCHEMAS}"
            raise TooLarge.field(detail, SETTING, "too many", kind="body")
        self.entries: list[tuple[str, Any]] = []
        for i, raw in enumerate(entries):
            where = f"{SETTING}[{i}]"
            entry = json_schemas.entry(RoomSchema, raw, where)
            self.entries.append(
                (entry.room, json_schemas.validator(entry.json_schema, f"{where}.json_schema"))
            )
        self._for_room = lru_cache(maxsize=4096)(self._matching)

    def _matching(self, room: str) -> tuple[Any, ...]:
        return tuple(check for glob, check in self.entries if fnmatchcase(room, glob))

    def globs(self) -> list[str]:
        return [glob for glob, _ in self.entries]

    def error(self, room: str, data: Any) -> tuple[str, str] | None:
        """(field, reason) when ``data`` fails a schema of ``room``; None when it passes."""
        for check in self._for_room(room):
            found = json_schemas.first_error(check, data, "data")
            if found is not None:
                return found
        return None
