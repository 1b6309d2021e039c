"""coreplane's multi-layer cache for application code: in-process + Memcached + Redis,
with tag and prefix invalidation the control plane can drive. See docs/cache.md.

    from controlplane.cache import Cache, MemoryLayer, MemcachedLayer, RedisLayer
"""

from controlplane.cache.core import Cache, CacheError
from controlplane.cache.layers import MemcachedLayer, MemoryLayer, RedisLayer

__all__ = ["Cache", "CacheError", "MemcachedLayer", "MemoryLayer", "RedisLayer"]
