"""A write is committed before its answer leaves: a commit that fails is never answered 2xx
(FastAPI ends a yield dependency after the response by default, so the route's session
must close with the route, not with the request)."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from controlplane.app import create_app
from controlplane.web import db_session, read_session
from tests.support.stores import ADMIN, make_settings


class _CommitRefused(OperationalError):
    def __init__(self) -> None:
        super().__init__("COMMIT", {}, Exception("database is locked"))


def test_a_commit_that_fails_is_not_answered_2xx_and_a_2xx_write_is_readable_at_once(store):
    from fastapi.testclient import TestClient

    app = create_app(make_settings(store))
    refuse = {"on": False}

    @event.listens_for(app.state.sessionmaker, "before_commit")
    def _before_commit(session) -> None:  # type: ignore[no-untyped-def]
        if refuse["on"]:
            raise _CommitRefused

    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}, raise_server_exceptions=False) as api:
        refuse["on"] = True
        answer = api.put("/api/v1/settings/feature.flags", json={"value": {"x": 1}, "version": 0})
        refuse["on"] = False
        assert answer.status_code == 503, answer.text  # the store was busy: the client retries
        assert answer.headers["retry-after"] == "1"
        assert api.get("/api/v1/settings/feature.flags").status_code == 404  # nothing half-stored

        for version in range(5):  # read-your-write, every time
            put = api.put(
                "/api/v1/settings/feature.flags", json={"value": {"v": version}, "version": version}
            )
            assert put.status_code == 200, put.text
            assert api.get("/api/v1/settings/feature.flags").json()["value"] == {"v": version}


def _store_dependencies(dependant, path: str = ""):  # type: ignore[no-untyped-def]
    for sub in dependant.dependencies:
        if sub.call in (db_session, read_session):
            yield path, sub
        yield from _store_dependencies(sub, path)


def _api_routes(routes):  # type: ignore[no-untyped-def]
    """Every APIRoute, also inside included routers (FastAPI keeps those as their own routes)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def test_every_route_closes_its_store_session_before_it_answers(store):
    """A new route written with a bare ``Depends(db_session)`` would bring the bug back."""
    app = create_app(make_settings(store))
    found = []
    for route in _api_routes(app.routes):
        found += [(route.path, dep.scope) for _, dep in _store_dependencies(route.dependant)]
    assert len(found) > 30  # the walk really reaches the routes' sessions
    late = sorted({path for path, scope in found if scope != "function"})
    assert not late, f"these routes commit after answering: use Depends(db_session, scope='function'): {late}"


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path, services):
    from tests.support.stores import migrated_store

    with migrated_store(request.param, tmp_path, services) as migrated:
        yield migrated
