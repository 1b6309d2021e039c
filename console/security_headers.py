"""Security headers on every HTTP answer: console pages, the API and static files alike.

The console serves no inline script or style (behaviour lives in console/static/*.js,
looks in console.css), so its Content-Security-Policy allows only the page's own origin
and needs no nonce. 'self' in connect-src covers the page's own websocket (/ws/console):
CSP Level 3 matches ws:/wss: of the same host, as Chromium and Firefox do.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# Anything that is not a page (JSON, problem+json, metrics, static files) never runs as
# one: if a browser is tricked into rendering it, nothing in it may load or execute.
RESOURCE_POLICY = "default-src 'none'; frame-ancestors 'none'"

COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    # frame-ancestors for browsers that predate it.
    (b"x-frame-options", b"DENY"),
)


def headers_for(content_type: str) -> list[tuple[bytes, bytes]]:
    """The security headers an answer of ``content_type`` carries."""
    page = content_type.split(";", 1)[0].strip().lower() == "text/html"
    policy = CONSOLE_POLICY if page else RESOURCE_POLICY
    return [(b"content-security-policy", policy.encode()), *COMMON]


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to each HTTP answer that does not set its own
    (a route may tighten or relax one for itself). Websockets pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                extra = headers_for(content_type.decode("latin-1"))
                headers += [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
