"""What redis-py's exceptions mean to freshcache: which ``BackendError`` each becomes.

Shared by the standalone and the cluster backends, so both report failures the same way and
nothing else ever leaves them.
"""

from __future__ import annotations

import asyncio

import redis.exceptions

from freshcache.backends.base import BackendError

#: Everything a redis-py call may raise that means "the backend could not answer".
REDIS_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


def classify(exc: BaseException) -> BackendError:
    """The ``BackendError`` (kind "timeout", "connection" or "server") for a redis-py error."""
    if isinstance(exc, redis.exceptions.TimeoutError | asyncio.TimeoutError | TimeoutError):
        return BackendError("timeout", str(exc) or type(exc).__name__)
    if isinstance(exc, redis.exceptions.ConnectionError | OSError):
        return BackendError("connection", str(exc) or type(exc).__name__)
    return BackendError("server", f"{type(exc).__name__}: {exc}")
