"""A cap on the size of a request's head (request line and headers) for `coreplane serve`.

uvicorn's fast parser (httptools, i.e. llhttp) sets no limit: a client could send
megabytes of headers, or stream one header for ever, and each would be held in memory.
This protocol answers 431 problem+json once the head passes the limit, which it reads
from uvicorn's own ``h11_max_incomplete_event_size`` (the same limit for its h11 parser)."""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_LIMIT = 32 * 1024


class _HeadTooLarge(Exception):
    pass


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head over the configured size with 431."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit = self.config.h11_max_incomplete_event_size or DEFAULT_LIMIT
        self._head_bytes = 0  # of the current head, as the parser hands it over
        self._head_received = 0  # bytes received since the current head began (not yet parsed whole)
        self._in_head = True
        self._too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._in_head = 0, True

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._head_limit:
            self._too_large = True
            raise _HeadTooLarge  # httptools wraps it in a parser error: send_400_response below

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_received = False, 0
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        if counting:
            self._head_received += len(data)
        super().data_received(data)
        # A head still incomplete after this much data (one endless header) is refused
        # before the parser buffers more of it.
        if counting and self._in_head and self._head_received > self._head_limit and not self._too_large:
            self._too_large = True
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            return super().send_400_response(msg)
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": f"the request line and headers are over {self._head_limit} bytes: send smaller "
                "headers (a smaller cookie, fewer or shorter custom headers)",
            }
        ).encode()
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        return None
