"""Definition backups against the real RabbitMQ and S3 server: the recovery drill (declare a
topology with arguments, bindings and a policy, export, wipe the vhost, import, compare),
users' password hashes redacted in a broker-wide export and left out of a restore, the file
0600, the S3 round trip, the scheduled loop, and the admin API with its refusals."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from controlplane.errors import Rejected
from controlplane.messaging import backup
from controlplane.messaging.backup import REDACTED, BackupLoop, BackupManagement
from controlplane.store.models import AuditEntry
from tests.support.messaging import declare_definition, settings_for
from tests.support.messaging_analytics import app_client, app_settings, token_of
from tests.support.processes import coreplane_bin, coreplane_env
from tests.support.rabbitmq import management, rabbit_vhost, vhost_of
from tests.support.serve import private_serve
from tests.support.timing import until

TOPOLOGY = {
    "exchanges": [{"name": "orders", "type": "topic"}, {"name": "fan", "type": "fanout"}],
    "queues": [
        {"name": "orders.created", "type": "quorum", "retry": {"attempts": 3, "backoff_s": 1}},
        {"name": "jobs", "max_priority": 10, "message_ttl_ms": 60000, "max_length": 1000,
         "overflow": "reject-publish"},
        {"name": "audit", "dead_letter": False},
    ],
    "bindings": [
        {"exchange": "orders", "queue": "orders.created", "routing_key": "order.created.*"},
        {"exchange": "fan", "queue": "audit"},
    ],
}  # fmt: skip


def _mgmt(services, url: str) -> BackupManagement:
    base, (user, password) = management(services)
    scheme, rest = base.split("://", 1)
    return BackupManagement(f"{scheme}://{quote(user)}:{quote(password)}@{rest}", vhost_of(url))


def _normalised(doc: dict) -> dict:
    """The vhost's definitions, each list in a stable order (RabbitMQ lists them as it likes)."""
    sections = ("queues", "exchanges", "bindings", "policies", "parameters")
    return {k: sorted(json.dumps(item, sort_keys=True) for item in doc.get(k, [])) for k in sections}


def _wipe(services, url: str) -> None:
    """Delete the vhost and make it again, empty, with the harness user's permissions."""
    base, auth = management(services)
    vhost = quote(vhost_of(url), safe="")
    with httpx.Client(base_url=base, auth=auth, timeout=10) as api:
        api.delete(f"/api/vhosts/{vhost}").raise_for_status()
        api.put(f"/api/vhosts/{vhost}").raise_for_status()
        api.put(f"/api/permissions/{vhost}/{quote(auth[0], safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()  # fmt: skip


def _topology(services, url: str) -> BackupManagement:
    declare_definition(settings_for(services, url, TOPOLOGY))
    mgmt = _mgmt(services, url)
    mgmt.put_policy("audit-ttl", "^audit$", {"message-ttl": 30000}, apply_to="queues", priority=1)
    return mgmt


def test_recovery_drill_export_wipe_import_gives_the_same_definitions(services, tmp_path):
    with rabbit_vhost(services) as url, _topology(services, url) as mgmt:
        before = _normalised(mgmt.definitions())
        assert len(before["queues"]) == 7 and before["policies"], before  # 3 + 2 retry + 2 DLQs
        path = backup.to_file(backup.export(mgmt, scope="vhost"), tmp_path / "backups")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        _wipe(services, url)
        assert _normalised(mgmt.definitions())["queues"] == [], "the wipe left queues behind"
        assert backup.restore(mgmt, backup.read_file(path)) == []
        after = _normalised(mgmt.definitions())
    assert after == before


def test_a_broker_export_redacts_every_password_hash_and_keeps_permissions(services):
    with rabbit_vhost(services) as url, _mgmt(services, url) as mgmt:
        raw = mgmt.broker_definitions()
        doc = backup.export(mgmt, scope="broker")
    assert raw["users"] and all(u["password_hash"] != REDACTED for u in raw["users"])
    assert [u["password_hash"] for u in doc["users"]] == [REDACTED] * len(raw["users"])
    assert [u["name"] for u in doc["users"]] == [u["name"] for u in raw["users"]]
    assert doc["permissions"] == raw["permissions"] and any(
        p["vhost"] == vhost_of(url) for p in doc["permissions"]
    )
    assert doc["coreplane"]["scope"] == "broker"


def test_a_restore_leaves_out_users_whose_hash_was_redacted(services):
    vhost = f"t-{secrets.token_hex(4)}"
    ghost = f"t-ghost-{secrets.token_hex(3)}"
    base, auth = management(services)
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    doc = {
        "vhosts": [{"name": vhost}],
        "users": [{"name": ghost, "password_hash": REDACTED, "hashing_algorithm":
                   "rabbit_password_hashing_sha256", "tags": []}],
        "permissions": [{"user": ghost, "vhost": vhost, **perms}, {"user": auth[0], "vhost": vhost, **perms}],
        "queues": [{"name": "kept", "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {}}],
    }  # fmt: skip
    with httpx.Client(base_url=base, auth=auth, timeout=10) as api:
        try:
            with _mgmt(services, f"amqp://x/{vhost}") as mgmt:
                assert backup.restore(mgmt, doc) == [ghost]
                assert [q["name"] for q in mgmt.queues(columns=["name"])] == ["kept"]
            assert api.get(f"/api/users/{ghost}").status_code == 404, "a redacted user was created"
            assert api.get(f"/api/permissions/{vhost}/{quote(auth[0], safe='')}").status_code == 200
        finally:
            api.delete(f"/api/vhosts/{vhost}")
            api.delete(f"/api/users/{ghost}")


def test_s3_round_trip_and_the_scheduled_loop(services, store, tmp_path):
    bucket = f"t-mq-{secrets.token_hex(4)}"
    with rabbit_vhost(services) as url, _topology(services, url) as mgmt:
        doc = backup.export(mgmt, scope="vhost")
        key = backup.to_s3(doc, services.s3, bucket)
        assert backup.read_s3(services.s3, bucket, key) == doc
        settings = app_settings(store, services, settings_for(services, url), backup_dir=str(tmp_path / "b"),
                                backup_bucket=bucket, backup_interval_s=3600)  # fmt: skip
        written = BackupLoop(store.engine, settings, lambda: _mgmt(services, url)).run_once()
    client = backup.s3_client(services.s3)
    try:
        assert len(written) == 2 and written[1].startswith(f"s3://{bucket}/")
        assert stat.S_IMODE(Path(written[0]).stat().st_mode) == 0o600
        users = json.loads(Path(written[0]).read_text())["users"]  # scheduled: the whole broker
        assert users and {u["password_hash"] for u in users} == {REDACTED}
        with store.sessions() as session:
            audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "messaging.backup")).all()
        assert sorted(a.target for a in audited) == sorted(written)
        assert {a.actor for a in audited} == {"system"}
    finally:
        for found in client.list_objects(bucket):
            client.remove_object(bucket, found.object_name)
        client.remove_bucket(bucket)


@pytest.mark.parametrize(
    ("doc", "field"),
    [([], "body"), ({"nothing": 1}, "body"), ({"queues": {"a": 1}}, "body.queues"),
     ({"queues": [1]}, "body.queues[0]")],
)  # fmt: skip
def test_a_malformed_document_is_refused_naming_what_is_wrong(doc, field):
    with pytest.raises(Rejected) as refused:
        backup.check(doc)
    assert refused.value.errors[0]["field"] == field


def test_the_api_backs_up_exports_and_imports_for_admins_only(services, store, tmp_path):
    with rabbit_vhost(services) as url, _topology(services, url) as mgmt:
        before = _normalised(mgmt.definitions())
        settings = app_settings(store, services, settings_for(services, url), backup_dir=str(tmp_path / "b"))
        with app_client(settings) as admin:
            operator = {"Authorization": f"Bearer {token_of(admin, 'operator')}"}
            assert admin.get("/api/v1/messaging/definitions/export", headers=operator).status_code == 403
            exported = admin.get("/api/v1/messaging/definitions/export", params={"scope": "vhost"})
            assert exported.status_code == 200, exported.text
            doc = exported.json()

            made = admin.post("/api/v1/messaging/backups", json={"to": "file", "scope": "vhost"})
            assert made.status_code == 201, made.text
            assert stat.S_IMODE(Path(made.json()["written"]).stat().st_mode) == 0o600
            no_bucket = admin.post("/api/v1/messaging/backups", json={"to": "s3"})
            assert no_bucket.status_code == 409 and "BACKUP_BUCKET" in no_bucket.text

            _wipe(services, url)
            imports = "/api/v1/messaging/definitions/import"
            assert admin.post(imports, json=doc, headers=operator).status_code == 403
            bad = admin.post(imports, json={"queues": "all of them"})
            assert bad.status_code == 422 and "body.queues" in bad.text, bad.text
            garbled = admin.post(imports, content=b"{not json", headers={"Content-Type": "application/json"})
            assert garbled.status_code == 422
            big = admin.post(imports, content=b" " * (backup.MAX_DOCUMENT_BYTES + 1))
            assert big.status_code == 413
            assert _normalised(mgmt.definitions())["queues"] == [], "a refused import touched the broker"
            loaded = admin.post(imports, json=doc)
            assert loaded.status_code == 200, loaded.text
            assert loaded.json()["loaded"]["queues"] == 7
        after = _normalised(mgmt.definitions())
    assert after == before
    with store.sessions() as session:
        actions = sorted(a.action for a in session.scalars(select(AuditEntry)))
    assert actions.count("messaging.backup") == 1 and actions.count("messaging.import") == 1


def test_the_cli_exports_to_a_file_and_imports_it_back(services, tmp_path):
    def coreplane(*args: str, url: str) -> subprocess.CompletedProcess:
        env = coreplane_env(True, messaging__url=url)
        return subprocess.run([coreplane_bin(), "messaging", *args], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    with rabbit_vhost(services) as url, _topology(services, url) as mgmt:
        before = _normalised(mgmt.definitions())
        path = tmp_path / "defs.json"
        done = coreplane("export", "--vhost-only", "--to", str(path), url=url)
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        again = coreplane("export", "--to", str(path), url=url)
        assert again.returncode == 2 and "exists" in again.stderr, "an export never overwrites a file"
        _wipe(services, url)
        refused = coreplane("import", str(path), url=url)  # asks; no answer on stdin: nothing loaded
        assert refused.returncode != 0 and _normalised(mgmt.definitions())["queues"] == []
        loaded = coreplane("import", str(path), "--yes", url=url)
        assert loaded.returncode == 0, loaded.stderr
        assert "7 queues" in loaded.stdout
        assert _normalised(mgmt.definitions()) == before


def test_serve_writes_scheduled_backups_when_an_interval_is_set(services, tmp_path):
    folder = tmp_path / "scheduled"
    with rabbit_vhost(services) as url:
        settings = {
            "messaging__url": url,
            "messaging__backup_dir": str(folder),
            "messaging__backup_interval_s": "1",
        }
        with private_serve(tmp_path, **settings) as (_url, _token, log):
            found = until("two scheduled backups", lambda: sorted(folder.glob("*.json"))[1:] and sorted(folder.glob("*.json")),
                          timeout_s=30, every_s=0.2, logs=log.read_text)  # fmt: skip
    assert {stat.S_IMODE(p.stat().st_mode) for p in found} == {0o600}
    assert {u["password_hash"] for u in json.loads(found[0].read_text())["users"]} == {REDACTED}
