"""Realtime tokens: signed, short-lived, carrying the user and its room globs. Pure logic."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeSerializer
from pydantic import ValidationError

from controlplane.realtime import tokens
from controlplane.realtime.tokens import Grant, InvalidToken, TokenRequest

SECRET = "s" * 32


def _token(ttl_s: int | None = None, **fields) -> str:
    body = {"user": "ann", "join": ["chat:*"], "publish": ["chat:1"], "ttl_s": ttl_s, **fields}
    return tokens.issue(SECRET, TokenRequest(**body), default_ttl_s=900).token


def test_a_token_verifies_to_the_grant_it_was_issued_for():
    before = time.time()
    out = tokens.issue(SECRET, TokenRequest(user="ann", join=["chat:*"], publish=["chat:1"]), 900)
    grant = tokens.verify(SECRET, out.token)
    assert (grant.user, grant.join, grant.publish) == ("ann", ("chat:*",), ("chat:1",))
    assert before + 899 <= out.expires_at <= time.time() + 901
    assert grant.expires_at == pytest.approx(out.expires_at, abs=0.01)


def test_the_requested_ttl_wins_over_the_default():
    out = tokens.issue(SECRET, TokenRequest(user="ann", ttl_s=60), 900)
    assert out.expires_at <= time.time() + 61


def test_a_forged_signature_is_refused():
    token = _token()
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(SECRET, forged)


def test_a_token_of_another_secret_or_salt_is_refused():
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify("another-secret", _token())
    cookie_like = URLSafeSerializer(SECRET, salt="coreplane.console.session").dumps(
        {"u": "ann", "j": ["*"], "p": ["*"], "e": time.time() + 60}
    )
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(SECRET, cookie_like)


def test_an_expired_token_is_refused():
    body = {"u": "ann", "j": ["*"], "p": [], "e": time.time() - 1}
    token = URLSafeSerializer(SECRET, salt=tokens._SALT).dumps(body)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(SECRET, token)


def test_a_signed_body_that_is_not_a_token_is_refused():
    token = URLSafeSerializer(SECRET, salt=tokens._SALT).dumps({"u": "ann"})
    with pytest.raises(InvalidToken, match="not a realtime token"):
        tokens.verify(SECRET, token)


def test_globs_decide_join_and_publish_separately():
    grant = Grant("ann", ("chat:*", "news"), ("chat:1",), None)
    assert grant.may_join("chat:42") and grant.may_join("news")
    assert not grant.may_join("news:1") and not grant.may_join("Chat:1")  # case matters
    assert grant.may_publish("chat:1") and not grant.may_publish("chat:2") and not grant.may_publish("news")
    assert not Grant("bob", (), (), None).may_join("anything")


def test_a_glob_may_name_a_set_or_one_character():
    grant = Grant("ann", ("room-[ab]", "r?"), (), None)
    assert grant.may_join("room-a") and grant.may_join("r1")
    assert not grant.may_join("room-c") and not grant.may_join("r12")


@pytest.mark.parametrize(
    "fields",
    [{"user": ""}, {"user": "u" * 129}, {"ttl_s": 5}, {"ttl_s": 86401}, {"join": ["r"] * 101},
     {"extra": 1}],
)  # fmt: skip
def test_a_token_request_is_bounded(fields):
    with pytest.raises(ValidationError):
        TokenRequest(**{"user": "ann", **fields})
