"""Rendering console pages: the templates, one call that renders a whole page or one
named block for htmx, and who did a thing (for audit rows)."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import Response
from jinja2_fragments.fastapi import Jinja2Blocks

from console.session import csrf_token, current, current_user
from controlplane import __version__

templates = Jinja2Blocks(directory=Path(__file__).parent / "templates")
templates.env.globals["version"] = __version__


def actor(request: Request) -> str:
    return f"user:{current_user(request)}"


def client_address(request: Request) -> str:
    # The TCP peer, or the address a configured trusted proxy forwarded
    # (COREPLANE_SERVER__TRUSTED_PROXIES): uvicorn rewrites request.client only then.
    return request.client.host if request.client else "?"


def render(
    request: Request, name: str, context: dict, block: str | None = None, status: int = 200
) -> Response:
    """The page, or only ``block`` for htmx; ``status`` for a page that refuses something."""
    identity = current(request)
    context = {
        "csrf": csrf_token(request),
        "role": identity.role if identity else None,
        "user": identity.username if identity else None,
        **context,
    }
    if block and request.headers.get("HX-Request") == "true":
        return templates.TemplateResponse(request, name, context, status_code=status, block_name=block)
    return templates.TemplateResponse(request, name, context, status_code=status)
