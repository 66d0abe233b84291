"""``redis://``, ``rediss://`` and ``unix://`` on redis-py (asyncio and sync clients, hiredis).

Every call is bounded by the socket timeout; the pool is bounded and *waits* (up to
``pool_timeout``) for a free connection instead of failing; redis-py's own retries are off,
because retrying is the breaker's decision, and a retry with backoff multiplies an outage's
latency. Errors leave this package only as ``BackendError``.

Modules, laid out like ``backends/cluster``: ``scripts`` (the Lua the backends run, and the
SCAN batch sizes), ``options`` (redis-py connection options), ``errors`` (the one place a
redis-py exception becomes a ``BackendError``), ``lane`` (the hit path's MGET connections),
and the two faces that do the I/O: ``aio`` (``AsyncRedisBackend``) and ``sync``
(``SyncRedisBackend``).
"""

from __future__ import annotations

from freshcache.backends.redis.aio import AsyncRedisBackend
from freshcache.backends.redis.options import pool_options
from freshcache.backends.redis.scripts import (
    RELEASE_LOCK,
    SCAN_COUNT,
    STORE_IF_UNCHANGED,
    UNLINK_BATCH,
)
from freshcache.backends.redis.sync import SyncRedisBackend

__all__ = [
    "RELEASE_LOCK",
    "SCAN_COUNT",
    "STORE_IF_UNCHANGED",
    "UNLINK_BATCH",
    "AsyncRedisBackend",
    "SyncRedisBackend",
    "pool_options",
]
