"""Connections for the hit path's one MGET, kept outside redis-py's pool.

redis-py 8's asyncio pool takes a lock, records observability counters and probes the socket
(``can_read``) on every checkout and release; on the hit path that is most of the client-side
cost. These are redis-py connections (same options, same hiredis parser, same socket timeout),
pooled as a plain LIFO list. A connection whose command failed in any way (timeout,
cancellation, error) is closed, never reused, so an idle one never holds a stray reply.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from freshcache.backends.base import BackendError


class ReadLane:
    """The asyncio lane: in one event loop a ``pop`` and an ``append`` cannot interleave. It is
    bounded by the backend's ``Gate``, like every other command."""

    __slots__ = ("_idle", "_pool")

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[Any] = []

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        idle = self._idle
        fresh = not idle
        connection = self._pool.make_connection() if fresh else idle.pop()  # type: ignore[no-untyped-call]
        try:
            if fresh:  # inside the try: a connect that times out must close its transport too
                await connection.connect()
            await connection.send_packed_command(connection.pack_command("MGET", *keys), False)
            reply: list[bytes | None] = await connection.read_response()
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            raise
        idle.append(connection)
        return reply

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.disconnect()


class SyncReadLane:
    """The lane for threads: a deque of redis-py connections (``pop``/``append`` are atomic),
    bounded by a semaphore that waits up to ``pool_timeout`` for a free slot."""

    __slots__ = ("_idle", "_pool", "_slots", "_wait")

    def __init__(self, pool: redis.ConnectionPool, size: int, wait: float) -> None:
        self._pool = pool
        self._idle: collections.deque[Any] = collections.deque()
        self._slots = threading.BoundedSemaphore(size)
        self._wait = wait

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not self._slots.acquire(timeout=self._wait):
            raise BackendError(
                "timeout", f"no free connection within {self._wait}s (max_connections reached)"
            )
        try:
            fresh = False
            try:
                connection = self._idle.pop()
            except IndexError:
                connection, fresh = self._pool.make_connection(), True
            try:
                if fresh:  # inside the try, as in ReadLane
                    connection.connect()
                connection.send_packed_command(connection.pack_command("MGET", *keys), False)
                reply: list[bytes | None] = connection.read_response()
            except BaseException:
                with contextlib.suppress(Exception):
                    connection.disconnect()
                raise
            self._idle.append(connection)
            return reply
        finally:
            self._slots.release()

    def close(self) -> None:
        while self._idle:
            with contextlib.suppress(Exception):
                self._idle.pop().disconnect()
