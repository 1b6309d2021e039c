"""Credentials. Tokens are stored and compared as SHA-256 digests, never in clear.

SHA-256 (not a slow password hash) is right here: every token is 256 random bits,
so there is nothing to brute-force; a constant-time compare guards the check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.clock import utcnow
from controlplane.store.models import ControlSecret

ADMIN_TOKEN_SECRET = "admin_token_sha256"  # noqa: S105 - a control_secrets name
SESSION_SECRET = "session_secret"  # noqa: S105 - a control_secrets name


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, token_digest: str) -> bool:
    return hmac.compare_digest(digest(token), token_digest)


def _secret(session: Session, name: str) -> str | None:
    return session.scalars(select(ControlSecret.value).where(ControlSecret.name == name)).first()


def _put_secret(session: Session, name: str, value: str) -> None:
    session.add(ControlSecret(name=name, value=value, created_at=utcnow()))


def admin_token_digest(session: Session, env_token: str | None) -> tuple[str, str | None]:
    """The admin credential's digest, and the clear token when it was generated just now.

    With ``COREPLANE_ADMIN_TOKEN`` set, that token is the credential. Unset, a token
    is generated on first start, only its digest is stored, and the caller prints
    it once. The caller commits.
    """
    if env_token:
        return digest(env_token), None
    stored = _secret(session, ADMIN_TOKEN_SECRET)
    if stored:
        return stored, None
    token = new_token()
    _put_secret(session, ADMIN_TOKEN_SECRET, digest(token))
    return digest(token), token


def session_secret(session: Session, env_secret: str | None) -> str:
    """The console's cookie-signing key, shared by every replica through the store."""
    if env_secret:
        return env_secret
    stored = _secret(session, SESSION_SECRET)
    if stored:
        return stored
    secret = secrets.token_urlsafe(48)
    _put_secret(session, SESSION_SECRET, secret)
    return secret
