"""Live console pages: a websocket per open page, served by Django Channels inside the
same ASGI app, that pushes re-rendered HTML fragments (the htmx ws extension swaps each
top-level element into the element with the same id).

    browser ──ws /ws/console?page=overview──> ConsoleConsumer  (joins its process's group)
    store commit ─> NOTIFIER ─> bridge() ─> channel layer group_send(group(), changed)
                                              └─> each consumer re-renders its page's blocks

A page names the notifier channels it depends on and a function that renders its live
blocks; a consumer sends them on connect (so a reconnect catches up on what it missed),
then again whenever one of its channels changes, skipping a block whose HTML did not
change. ``TICK`` changes every ``server.live_tick_s`` (5 s), for what time alone changes (a
silent agent, a sparkline's window). Every socket showing the same page, parameters and role shares one
render per change: twenty operators on the overview cost one render, not twenty.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from console.session import console_identity
from controlplane.notify import ACTIONS, CATALOG, EVENTS, MESSAGING, NOTIFIER, TASKS
from controlplane.telemetry import LIVE_RENDER_SECONDS
from controlplane.users import RANK

log = logging.getLogger("coreplane.console.live")

_BOOT = uuid.uuid4().hex[:8]


def group() -> str:
    """This process's group. Each process's bridge hears every commit (PostgreSQL NOTIFY
    feeds it), so with a shared (Redis) channel layer a group common to all processes would
    hand each socket every change once per process: N renders instead of one."""
    return f"console.{_BOOT}.{os.getpid()}"  # the pid: workers forked after import differ


TICK = "tick"
COALESCE_S = 0.2  # a burst of commits becomes one push


@dataclass(frozen=True)
class LivePage:
    channels: frozenset[str]
    # (app, query parameters, role) -> the page's live blocks, each an element with an id;
    # a coroutine function for a page whose figures come from an async client (realtime's
    # rooms: its Redis client belongs to the server's event loop, not to a worker thread's)
    render: Callable[[Any, dict[str, str], str], dict[str, str] | Awaitable[dict[str, str]]]


def _pages() -> dict[str, LivePage]:
    # Explicit, like every other registry here; imported late because the page modules
    # import the templates, which import this module's helpers.
    from console import catalog, events, messaging_dead, overview, realtime, tasks

    return {
        "overview": LivePage(frozenset({CATALOG, ACTIONS, EVENTS, TICK}), overview.live_blocks),
        "instance": LivePage(frozenset({CATALOG, TICK}), catalog.instance_live_blocks),
        "services": LivePage(frozenset({CATALOG, TICK}), catalog.services_live_blocks),
        "events": LivePage(frozenset({EVENTS}), events.live_blocks),
        "tasks": LivePage(frozenset({TASKS}), tasks.live_blocks),
        "task": LivePage(frozenset({TASKS}), tasks.run_live_blocks),
        "mq-dead": LivePage(frozenset({MESSAGING}), messaging_dead.live_blocks),
        "realtime": LivePage(frozenset({TICK}), realtime.live_blocks),
    }


# Close code for a socket whose session ended (logout, disable, role or password change):
# a policy violation, which the htmx ws extension does not retry (it retries 1006/1012/1013).
SESSION_ENDED = 1008


class ConsoleConsumer(AsyncWebsocketConsumer):
    """One open console page. It needs the console session (the same signed cookie as
    the pages, read by the app's session middleware, checked against the store) and a
    same-origin request. The session is checked again on every message from the bridge
    (a change or the tick), so a socket outlives its session by a tick at most."""

    async def connect(self) -> None:
        self.role = await self._current_role()
        query = {k: v[-1] for k, v in parse_qs(self.scope.get("query_string", b"").decode()).items()}
        self.name = query.pop("page", "")
        self.page = _pages().get(self.name)
        self.params = query
        if self.role not in RANK or not same_origin(self.scope):
            await self.close(code=4403)  # before accept: the browser sees a refused handshake
            return
        if self.page is None:
            await self.close(code=4404)
            return
        self.sent: dict[str, str] = {}
        await self.channel_layer.group_add(group(), self.channel_name)
        await self.accept()
        CONNECTIONS.add(self)
        await self._push()  # the catch-up: everything as it is now

    async def disconnect(self, code: int) -> None:
        CONNECTIONS.discard(self)
        if getattr(self, "sent", None) is not None:
            await self.channel_layer.group_discard(group(), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the page sends nothing the server acts on; forms post over HTTP with CSRF

    async def store_changed(self, message: dict) -> None:
        if self.page is None:
            return
        if await self._current_role() != self.role:  # logged out, disabled, demoted
            await self.close(code=SESSION_ENDED)
            return
        if self.page.channels & set(message["channels"]):
            await self._push(message["stamp"])

    async def _current_role(self) -> str | None:
        """The role of this socket's console session as the store says now (None: ended)."""
        cookie = dict(self.scope.get("session") or {})  # a copy: the handshake's cookie is sent already
        identity = await asyncio.to_thread(console_identity, self.scope["app"], cookie)
        return identity.role if identity else None

    async def _push(self, stamp: str | None = None) -> None:
        """Send the blocks that changed; ``stamp`` names the change, None a catch-up (a
        render of this socket's own)."""
        key = (stamp, id(self.scope["app"]), self.name, tuple(sorted(self.params.items())), self.role)
        render = _RENDERS.get(key) if stamp else None
        if render is None:
            render = asyncio.ensure_future(self.render())
            if stamp:
                for old in [k for k in _RENDERS if k[0] != stamp]:  # only the newest change is shared
                    del _RENDERS[old]
                _RENDERS[key] = render
        try:
            blocks = await asyncio.shield(render)  # one socket closing does not cancel the others' render
        except Exception:
            log.exception("live render of %s failed", self.scope.get("query_string"))
            return
        changed = [html for block_id, html in blocks.items() if self.sent.get(block_id) != html]
        if changed:
            self.sent.update(blocks)
            await self.send(text_data="\n".join(changed))

    async def render(self) -> dict[str, str]:
        page, role = self.page, self.role
        assert page is not None and role is not None  # connect() accepts only a known page and role
        with LIVE_RENDER_SECONDS.labels(self.name).time():
            blocks: Any  # the blocks, or (a coroutine function's) an awaitable of them
            if inspect.iscoroutinefunction(page.render):
                blocks = page.render(self.scope["app"], self.params, role)
            else:
                blocks = await asyncio.to_thread(page.render, self.scope["app"], self.params, role)
            return await blocks if inspect.isawaitable(blocks) else blocks


CONNECTIONS: set[ConsoleConsumer] = set()
# (change stamp, app, page, parameters, role) -> the render every socket showing it awaits
_RENDERS: dict[tuple, asyncio.Future] = {}


def same_origin(scope: dict) -> bool:
    """A websocket carries cookies cross-site; refuse a page served from elsewhere."""
    headers = dict(scope.get("headers") or [])
    origin, host = headers.get(b"origin", b"").decode(), headers.get(b"host", b"").decode()
    return bool(origin) and urlsplit(origin).netloc == host


class _Endpoint:
    """Starlette wraps a bare function as a websocket handler; a callable object is
    passed the raw ASGI scope, which is what a Channels consumer expects."""

    def __init__(self) -> None:
        self.app = ConsoleConsumer.as_asgi()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self.app(scope, receive, send)


endpoint = _Endpoint


async def bridge(stop: asyncio.Event, tick_s: float) -> None:
    """Turns store commits (NOTIFIER, fed across processes by PostgreSQL NOTIFY) into one
    channel-layer message per burst, plus a tick every ``tick_s``."""
    layer = get_channel_layer()
    watched = (CATALOG, ACTIONS, EVENTS, TASKS, MESSAGING)
    seen = NOTIFIER.snapshot(*watched)
    loop = asyncio.get_running_loop()
    next_tick = loop.time() + tick_s
    while not stop.is_set():
        await NOTIFIER.wait_any_async(seen, max(0.0, next_tick - loop.time()))
        await asyncio.sleep(COALESCE_S)
        now = NOTIFIER.snapshot(*watched)
        changed = [c for c in watched if now[c] != seen[c]]
        seen = now
        if loop.time() >= next_tick:
            changed.append(TICK)
            next_tick = loop.time() + tick_s
        if changed and CONNECTIONS:
            message = {"type": "store.changed", "channels": changed, "stamp": uuid.uuid4().hex}
            await layer.group_send(group(), message)


def ws_url(page: str, **params: str) -> str:
    """The websocket a live page connects to (its query travels with it)."""
    return "/ws/console?" + urlencode({"page": page, **{k: v for k, v in params.items() if v}})
