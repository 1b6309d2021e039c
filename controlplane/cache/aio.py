"""The async face of the cache: the same Cache, each call run in a worker thread (as
Django's cache does for its async methods), so event loops never block on a layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from controlplane.cache.core import Cache


class AsyncCache:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def get(self, key: str, default: Any = None) -> Any:
        return await asyncio.to_thread(self.cache.get, key, default)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await asyncio.to_thread(self.cache.get_many, list(keys))

    async def set(
        self, key: str, value: Any, ttl_s: float = 300.0, tags: Iterable[str] = (), stale_ttl_s: float = 0
    ) -> bool:
        return await asyncio.to_thread(self.cache.set, key, value, ttl_s, list(tags), stale_ttl_s)

    async def set_many(self, values: dict[str, Any], ttl_s: float = 300.0, tags: Iterable[str] = ()) -> bool:
        return await asyncio.to_thread(self.cache.set_many, values, ttl_s, list(tags))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.cache.delete, key)

    async def invalidate(
        self, *, keys: Iterable[str] = (), tags: Iterable[str] = (), prefixes: Iterable[str] = ()
    ) -> dict:
        return await asyncio.to_thread(
            lambda: self.cache.invalidate(keys=list(keys), tags=list(tags), prefixes=list(prefixes))
        )

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Coroutine[Any, Any, Any]],
        ttl_s: float = 300.0,
        tags: Iterable[str] = (),
        **options: float,
    ) -> Any:
        """``loader`` is a coroutine function; it runs on this event loop, once per key
        (the cache's single-flight and lease apply as in the sync API)."""
        loop = asyncio.get_running_loop()

        def load() -> Any:
            return asyncio.run_coroutine_threadsafe(loader(), loop).result()

        return await asyncio.to_thread(self.cache.get_or_set, key, load, ttl_s, list(tags), **options)
