"""GET /api/v1/events and GET/PUT /api/v1/settings on both dialects."""

from datetime import UTC, datetime, timedelta


def _events(api, n: int, batch_id: str, **fields) -> None:
    at = datetime.now(UTC)
    events = [
        {
            "event_type": fields.get("event_type", "health"),
            "service_name": fields.get("service_name", "redis"),
            "timestamp": (at - timedelta(seconds=i)).isoformat(),
            "status": fields.get("status", "passing"),
            "details": {"message": fields.get("message", f"event number {i}")},
        }
        for i in range(n)
    ]
    response = api.post("/api/v1/ingest", json={"batch_id": batch_id, "agent": "a", "events": events})
    assert response.status_code == 202, response.text


def test_full_text_search_over_details(api):
    _events(api, 3, "e1", message="replication lag rising on the replica")
    _events(api, 2, "e2", message="memory fragmentation high", service_name="memcached")
    found = api.get("/api/v1/events", params={"q": "replication replica"}).json()["events"]
    assert len(found) == 3
    assert {e["service_name"] for e in found} == {"redis"}
    assert (
        api.get("/api/v1/events", params={"q": "fragmentation", "service_name": "redis"}).json()["events"]
        == []
    )


def test_cursor_pages_cover_every_event_once_newest_first(api):
    _events(api, 25, "pages")
    seen, cursor = [], None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/events", params=params).json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 25
    assert len({e["id"] for e in seen}) == 25
    stamps = [e["timestamp"] for e in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_a_forged_cursor_is_a_422(api):
    response = api.get("/api/v1/events", params={"cursor": "not-a-cursor"})
    assert response.status_code == 422
    assert "cursor" in response.json()["detail"]


def test_settings_versions_conflicts_and_history(api):
    assert api.get("/api/v1/settings/cache.defaults").status_code == 404
    created = api.put("/api/v1/settings/cache.defaults", json={"value": {"ttl": 60}, "version": 0})
    assert created.status_code == 200
    assert created.json()["version"] == 1
    updated = api.put("/api/v1/settings/cache.defaults", json={"value": {"ttl": 90}, "version": 1})
    assert updated.json()["version"] == 2
    stale = api.put("/api/v1/settings/cache.defaults", json={"value": {"ttl": 5}, "version": 1})
    assert stale.status_code == 409
    assert "version 2" in stale.json()["detail"]
    assert api.get("/api/v1/settings/cache.defaults").json()["value"] == {"ttl": 90}
    history = api.get("/api/v1/settings/cache.defaults/history").json()
    assert [(h["version"], h["value"]) for h in history] == [(2, {"ttl": 90}), (1, {"ttl": 60})]


def test_credentials_in_the_settings_table_are_never_served(api):
    assert api.get("/api/v1/settings/auth.admin_token").status_code == 403
    assert (
        api.put("/api/v1/settings/console.session_secret", json={"value": {}, "version": 1}).status_code
        == 403
    )


def test_roles_viewer_reads_events_not_settings_operator_cannot_write_revoked_is_refused(api):
    def issue(role: str) -> tuple[str, str]:
        body = api.post("/api/v1/tokens", json={"name": f"{role}-token", "role": role}).json()
        return body["id"], body["token"]

    viewer_id, viewer = issue("viewer")
    _, operator = issue("operator")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    as_operator = {"Authorization": f"Bearer {operator}"}
    assert api.get("/api/v1/events", headers=as_viewer).status_code == 200
    # A settings document may hold a secret: only an admin reads it (the Settings page is
    # admin-only too), its history included.
    api.put("/api/v1/settings/hook.secret", json={"value": {"password": "s3cret"}, "version": 0})
    for path in ("/api/v1/settings/hook.secret", "/api/v1/settings/hook.secret/history"):
        for who in (as_viewer, as_operator):
            read = api.get(path, headers=who)
            assert read.status_code == 403 and "s3cret" not in read.text
        assert api.get(path).status_code == 200
    refused = api.put("/api/v1/settings/x", json={"value": {}, "version": 0}, headers=as_operator)
    assert refused.status_code == 403
    assert "admin role" in refused.json()["detail"]
    assert (
        api.post("/api/v1/tokens", json={"name": "n", "role": "admin"}, headers=as_viewer).status_code == 403
    )
    assert api.delete(f"/api/v1/tokens/{viewer_id}").status_code == 204
    assert api.get("/api/v1/events", headers=as_viewer).status_code == 401
