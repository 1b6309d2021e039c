"""Console sessions in the store, on both dialects: what ends one, and the maintenance
loop deleting expired ones."""

from __future__ import annotations

from datetime import timedelta

from controlplane import sessions, users
from controlplane.auth import digest
from controlplane.clock import utcnow
from controlplane.loops.store_maintenance import StoreMaintenance
from controlplane.settings import RetentionSettings

PASSWORD = "correct horse battery staple"


def test_role_change_disable_and_new_admin_token_end_sessions_and_expired_ones_are_pruned(store):
    admin_digest = digest("the admin token")
    with store.sessions.begin() as s:
        user = users.create_user(s, username="ada", password=PASSWORD, role="admin", actor="test")
        s.flush()
        ada = sessions.start(s, username="ada", user_id=user.id)
        admin = sessions.start(s, username=sessions.ADMIN_TOKEN_USER, credential_digest=admin_digest)
        old = sessions.start(s, username="ada", user_id=user.id, now=utcnow() - timedelta(hours=13))
    with store.sessions() as s:
        assert sessions.resolve(s, ada, admin_token_digest=admin_digest).role == "admin"
        assert sessions.resolve(s, admin, admin_token_digest=admin_digest).role == "admin"
        assert sessions.resolve(s, admin, admin_token_digest=digest("a new admin token")) is None
        assert sessions.resolve(s, old, admin_token_digest=admin_digest) is None  # past 12 h
    StoreMaintenance(store.engine, RetentionSettings()).run_once()
    assert store.count("console_sessions") == 2  # the expired one is gone
    with store.sessions.begin() as s:
        users.set_role(s, username="ada", role="viewer", actor="test")
    with store.sessions() as s:
        assert sessions.resolve(s, ada, admin_token_digest=admin_digest) is None
    with store.sessions.begin() as s:
        again = sessions.start(s, username="ada", user_id=user.id)
    with store.sessions.begin() as s:
        assert sessions.resolve(s, again, admin_token_digest=admin_digest).role == "viewer"
        users.set_disabled(s, username="ada", disabled=True, actor="test")
    with store.sessions() as s:
        assert sessions.resolve(s, again, admin_token_digest=admin_digest) is None
    assert store.count("console_sessions") == 1  # only the admin-token login's row is left
