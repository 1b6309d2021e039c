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
from controlplane.store.models import InfrastructureSetting

ADMIN_TOKEN_SETTING = "auth.admin_token"  # noqa: S105 - a settings key
SESSION_SECRET_SETTING = "console.session_secret"  # noqa: S105 - a settings key


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, token_digest: str) -> bool:
    return hmac.compare_digest(digest(token), token_digest)


def _setting(session: Session, setting_type: str) -> InfrastructureSetting | None:
    return session.scalars(
        select(InfrastructureSetting).where(InfrastructureSetting.setting_type == setting_type)
    ).first()


def _put_setting(session: Session, setting_type: str, value: dict) -> None:
    session.add(
        InfrastructureSetting(
            setting_type=setting_type,
            value=value,
            updated_at=utcnow(),
        )
    )


def admin_token_digest(session: Session, env_token: str | None) -> tuple[str, str | None]:
    """The admin credential's digest, and the clear token when it was generated just now.

    With ``COREPLANE_ADMIN_TOKEN`` set, that token is the credential. Unset, a token
    is generated on first start, only its digest is stored, and the caller prints
    it once. The caller commits.
    """
    if env_token:
        return digest(env_token), None
    row = _setting(session, ADMIN_TOKEN_SETTING)
    if row is not None and row.value:
        return row.value["sha256"], None
    token = new_token()
    _put_setting(session, ADMIN_TOKEN_SETTING, {"sha256": digest(token)})
    return digest(token), token


def session_secret(session: Session, env_secret: str | None) -> str:
    """The console's cookie-signing key, shared by every replica through the store."""
    if env_secret:
        return env_secret
    row = _setting(session, SESSION_SECRET_SETTING)
    if row is not None and row.value:
        return row.value["secret"]
    secret = secrets.token_urlsafe(48)
    _put_setting(session, SESSION_SECRET_SETTING, {"secret": secret})
    return secret
