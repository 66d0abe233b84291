"""What redis-py's exceptions mean to the cluster backend: which leave as which
``BackendError``, which say the slot map may be out of date, where a redirection points."""

from __future__ import annotations

import asyncio

import redis.exceptions

from freshcache.backends.base import BackendError
from freshcache.backends.cluster.settings import join_address, split_address
from freshcache.backends.errors import REDIS_ERRORS
from freshcache.backends.errors import classify as classify  # re-exported for the faces

ERRORS = REDIS_ERRORS
#: Replies that say the slot map we route by may be out of date.
TOPOLOGY_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,  # also MASTERDOWN
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    OSError,
    asyncio.TimeoutError,
)
#: What a malformed CLUSTER SLOTS reply raises while it is parsed.
MALFORMED = (ValueError, TypeError, IndexError)
#: What one node may do wrong while it is asked for the topology: the next one is asked.
REFRESH_ERRORS = (*ERRORS, BackendError, *MALFORMED)


def redirect_target(exc: redis.exceptions.AskError, current: str) -> str:
    # A node that does not know its own IP answers "MOVED 3999 :6381": the host we asked.
    host = exc.host or split_address(current)[0]
    return join_address(host, int(exc.port))
