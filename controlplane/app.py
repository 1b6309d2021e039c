"""The ASGI application: API, console and health endpoints in one process."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import IntegrityError
from starlette.middleware.sessions import SessionMiddleware

import console
from console.pages import LoginRequired
from console.pages import router as console_router
from controlplane import __version__, auth
from controlplane.api import agents, health, problems
from controlplane.api.deps import require_admin
from controlplane.settings import Settings
from controlplane.store.db import make_engine, make_sessionmaker

log = logging.getLogger("coreplane.serve")


def _bootstrap_credentials(app: FastAPI, settings: Settings) -> tuple[str, str]:
    """Load (or on first start create) the admin token digest and the session secret."""
    for _attempt in range(2):
        try:
            with app.state.sessionmaker.begin() as session:
                token_digest, new_token = auth.admin_token_digest(session, settings.admin_token)
                secret = auth.session_secret(session, settings.server.session_secret)
            break
        except IntegrityError:  # another replica created them at the same moment
            continue
    if new_token:
        # Printed once: only its digest is stored.
        print(
            f"coreplane: generated admin token (shown once, store it now): {new_token}", flush=True
        )
    return token_digest, secret


def create_app(settings: Settings) -> FastAPI:
    """Build the app. The store must already be migrated (`coreplane migrate`)."""
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        engine.dispose()

    app = FastAPI(
        title="coreplane",
        version=__version__,
        summary="Observability-first control plane for an application's core services.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.admin_token_digest, secret = _bootstrap_credentials(app, settings)

    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="coreplane_session",
        same_site="strict",
        https_only=settings.server.secure_cookies,
        max_age=12 * 3600,
    )
    problems.install(app)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        # HX-Redirect makes htmx load the login page instead of swapping it into a block.
        return RedirectResponse("/login", status_code=303, headers={"HX-Redirect": "/login"})

    app.include_router(health.router)
    app.include_router(agents.router, prefix="/api/v1", dependencies=[Depends(require_admin)])
    app.include_router(console_router)
    app.mount(
        "/static", StaticFiles(directory=Path(console.__file__).parent / "static"), name="static"
    )
    return app
