"""Realtime tokens: what an application's backend hands its users so their browsers may
open `/ws/rt` (``POST /api/v1/realtime/tokens``).

A token is signed (itsdangerous, HMAC-SHA1 under the server's session secret with its own
salt, so a token is no cookie and a cookie no token) and short-lived; it names the user and
the rooms it may join and publish to, as globs (``chat:*``). Nothing is stored: every
process that shares the secret checks one by itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fnmatch import fnmatchcase

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field

_SALT = "coreplane.realtime.token"
MAX_PATTERNS = 100
MAX_TTL_S = 86400


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=128, description="The application's id for the user.")
    join: list[str] = Field(
        default_factory=list, max_length=MAX_PATTERNS, description='Rooms it may join, as globs ("chat:*").'
    )
    publish: list[str] = Field(
        default_factory=list, max_length=MAX_PATTERNS, description="Rooms it may publish to, as globs."
    )
    ttl_s: int | None = Field(
        None,
        ge=10,
        le=MAX_TTL_S,
        description="Lifetime in seconds; realtime.token_ttl_s when unset.",
    )


class TokenOut(BaseModel):
    token: str
    user: str
    expires_at: float = Field(description="Unix time the token stops opening connections.")


@dataclass(frozen=True)
class Grant:
    """Who a connection is and where it may go."""

    user: str
    join: tuple[str, ...]
    publish: tuple[str, ...]
    expires_at: float | None  # None: a console session, checked by the session itself

    def may_join(self, room: str) -> bool:
        return any(fnmatchcase(room, p) for p in self.join)

    def may_publish(self, room: str) -> bool:
        return any(fnmatchcase(room, p) for p in self.publish)


class InvalidToken(Exception):
    pass


def issue(secret: str, request: TokenRequest, default_ttl_s: int) -> TokenOut:
    expires = time.time() + (request.ttl_s or default_ttl_s)
    body = {"u": request.user, "j": request.join, "p": request.publish, "e": round(expires, 3)}
    return TokenOut(
        token=URLSafeSerializer(secret, salt=_SALT).dumps(body), user=request.user, expires_at=expires
    )


def verify(secret: str, token: str) -> Grant:
    """The grant a token carries; InvalidToken saying why when it is forged or expired."""
    try:
        body = URLSafeSerializer(secret, salt=_SALT).loads(token)
    except BadSignature:
        raise InvalidToken("the token's signature does not verify") from None
    if not isinstance(body, dict) or not {"u", "j", "p", "e"} <= body.keys():
        raise InvalidToken("the token is not a realtime token")
    if body["e"] <= time.time():
        raise InvalidToken("the token has expired: ask the application for a new one")
    return Grant(body["u"], tuple(body["j"]), tuple(body["p"]), body["e"])
