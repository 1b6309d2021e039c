"""Security headers (issue 12, finding 9) against a real `coreplane serve`: every console
page answers with a Content-Security-Policy that allows no inline code and no framing,
plus nosniff, same-origin referrers and X-Frame-Options; no page's HTML holds what that
policy would refuse (an inline <script>, a style= or on*= attribute, an hx-on handler);
htmx runs without eval and without script tags; API answers carry the headers too."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from urllib.parse import quote

import httpx

from tests.support.console import console_users, csrf_of

INSTANCE = {"service": "web", "kind": "http", "address": "10.0.0.1:80", "status": "passing"}
PAGES = [
    "/",
    "/services",
    "/services/web",
    f"/services/web/instances/{quote(INSTANCE['address'], safe='')}",
    "/actions",
    "/events",
    "/explore",
    "/rules",
    "/settings",
    "/agents",
    "/users",
]


def _directives(policy: str) -> dict[str, list[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {words[0]: words[1:] for words in parsed}


def assert_secure_headers(answer: httpx.Response, page: bool = True) -> None:
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    assert answer.headers.get("x-content-type-options") == "nosniff", where
    assert answer.headers.get("referrer-policy") == "same-origin", where
    assert answer.headers.get("x-frame-options") == "DENY", where
    policy = answer.headers.get("content-security-policy", "")
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, (where, policy)
    directives = _directives(policy)
    assert directives.get("frame-ancestors") == ["'none'"], (where, policy)
    if page:
        assert directives.get("default-src") == ["'self'"], (where, policy)
        for name in ("script-src", "style-src", "connect-src"):  # nothing wider than 'self'
            assert directives.get(name) == ["'self'"], (where, name, policy)
    else:
        assert directives.get("default-src") == ["'none'"], (where, policy)


class _InlineCode(HTMLParser):
    """What the CSP would refuse in a page's HTML, and the htmx config it declares."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []
        self.htmx_config: dict | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.scripts += 1
            if not names.get("src"):
                self.refused.append(f"inline <script> {attrs}")
        if tag == "style":
            self.refused.append("<style> element")
        if tag == "meta" and names.get("name") == "htmx-config":
            self.htmx_config = json.loads(names.get("content") or "{}")
        for name, value in attrs:
            if name == "style" or name.startswith(("on", "hx-on", "data-hx-on")):
                self.refused.append(f"<{tag} {name}={value!r}>")
            if name in {"href", "src", "action", "formaction"} and (value or "").lower().startswith(
                "javascript:"
            ):
                self.refused.append(f"<{tag} {name}={value!r}>")
            if name in {"hx-vals", "hx-vars"}:
                self.refused.append(f"<{tag} {name}> (js: needs eval)")


def inline_code(html: str) -> _InlineCode:
    parser = _InlineCode()
    parser.feed(html)
    parser.close()
    return parser


def assert_no_inline_code(path: str, html: str, full_page: bool = True) -> None:
    found = inline_code(html)
    assert found.refused == [], (path, found.refused)
    if full_page:
        assert found.scripts > 0, (path, "no <script src> at all: not the console's layout?")
        config = found.htmx_config or {}
        for switch in ("allowEval", "allowScriptTags", "includeIndicatorStyles"):
            assert config.get(switch) is False, (path, switch, config)


def test_every_console_page_has_the_security_headers_and_no_inline_code(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    bearer = {"Authorization": f"Bearer {token}"}
    registered = httpx.post(f"{url}/api/v1/services/register", json=[INSTANCE], headers=bearer)
    assert registered.status_code == 202, registered.text

    login = httpx.get(f"{url}/login")
    assert login.status_code == 200
    assert_secure_headers(login)
    assert_no_inline_code("/login", login.text)

    admin = console_users(url, token)["admin"]
    for path in PAGES:
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), path
        assert_secure_headers(answer)
        assert_no_inline_code(path, answer.text)

    # A refusal the rules editor shows in place (a 422 block for htmx), and a 404 page.
    csrf = csrf_of(admin.get("/rules").text)
    bad = admin.post("/rules/preview", data={"csrf": csrf, "yaml": "- name: [unclosed"},
                     headers={"HX-Request": "true"})  # fmt: skip
    assert bad.status_code == 422, bad.text
    assert_secure_headers(bad)
    assert_no_inline_code("/rules/preview (htmx)", bad.text, full_page=False)
    missing = admin.get("/services/no-such-service")
    assert missing.status_code == 404
    assert_secure_headers(missing)
    assert_no_inline_code("/services/no-such-service", missing.text)


def test_api_and_static_answers_carry_the_headers_with_a_policy_that_loads_nothing(control_plane_sqlite):
    url, token, _log = control_plane_sqlite
    bearer = {"Authorization": f"Bearer {token}"}
    for path, headers, status in (
        ("/api/v1/services", bearer, 200),
        ("/api/v1/services", {}, 401),  # a problem+json refusal too
        ("/healthz", {}, 200),
        ("/static/console.css", {}, 200),
    ):
        answer = httpx.get(f"{url}{path}", headers=headers)
        assert answer.status_code == status, (path, answer.status_code)
        assert_secure_headers(answer, page=False)
