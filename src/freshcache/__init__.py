"""freshcache: application caching that never serves stale data after a write.

import freshcache
from freshcache import cached, invalidate_cache

freshcache.configure(url="redis://127.0.0.1:6379/0", namespace="myhibachi")

@cached(ttl=300, key_prefix="booking:stats")
async def get_dashboard_stats() -> Stats: ...

@invalidate_cache("booking:*")
async def create_booking(...) -> Booking: ...
"""

from freshcache.backends.base import BackendError
from freshcache.cache import Cache
from freshcache.codecs import DecodeError, EncodeError
from freshcache.config import configure, get_cache
from freshcache.decorators import BoundCachedFunction, CachedFunction, cached, invalidate_cache
from freshcache.keys import escape, pattern
from freshcache.metrics import PrefixStats

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BoundCachedFunction",
    "Cache",
    "CachedFunction",
    "DecodeError",
    "EncodeError",
    "PrefixStats",
    "__version__",
    "cached",
    "configure",
    "escape",
    "get_cache",
    "invalidate_cache",
    "pattern",
]
