"""The agent's HTTP, on urllib3 (which the S3 client needs anyway): one connection pool
per base URL, no TLS context built until an https URL is used, credentials taken out
of the URL so they never reach a log line."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3

HTTPError = urllib3.exceptions.HTTPError


class Response:
    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.status = raw.status
        self.content = raw.data
        self.headers = raw.headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise HTTPError(f"HTTP {self.status}: {self.text[:200]}")


class HttpClient:
    def __init__(
        self,
        base_url: str = "",
        *,
        timeout_s: float,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username is not None and auth is None:
            auth = (parts.username, parts.password or "")
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.base_url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.headers = dict(headers or {})
        if auth is not None:
            self.headers |= urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}")
        self.timeout_s = timeout_s
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        send = self.headers | (headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            send["Content-Type"] = "application/json"
        raw = self._pool.request(
            method,
            url,
            body=body,
            headers=send,
            timeout=self.timeout_s if timeout_s is None else timeout_s,
            redirect=False,
        )
        return Response(raw)

    def get(self, path: str, **params: Any) -> Response:
        return self.request("GET", path, params=params or None)

    def close(self) -> None:
        self._pool.clear()
