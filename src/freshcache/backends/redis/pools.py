"""The connection pools of the standalone Redis backend: redis-py pools whose every connection
holds a permit of the cache's ``ConnectionBudget`` (one bound for all pools together).

One pool per face and event loop serves both the hit lane's MGET and every redis-py command,
pipeline and script, from one LIFO list of idle connections: no lock, no observability
counters and no socket probe on a checkout (redis-py's own pools do all three; on the hit path
that was most of the client-side cost). A connection whose command failed in any way is
disconnected by redis-py (or by the lane) and reconnected on its next checkout, so an idle one
never holds a stray reply.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from freshcache.backends.budget import ConnectionBudget


class _KeepsSocket:
    """Mixed into redis-py's async connection classes: remembers its event loop and socket,
    so that another thread can close it (an idle connection of another loop, or of a loop
    that is gone and can no longer run the close)."""

    home: asyncio.AbstractEventLoop | None = None
    transport_socket: Any = None

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[misc]
        self.home = asyncio.get_running_loop()
        writer = self._writer  # type: ignore[attr-defined]
        self.transport_socket = writer.transport.get_extra_info("socket")

    def shut_down(self, then: Callable[[], None]) -> None:
        """Close the connection from any thread; call ``then`` once the server has been told.

        The TCP connection is ended here, at the socket, and ``then`` runs at once: waiting
        for the connection's own loop could wait forever (that loop may be blocked, for
        instance on a thread that is itself waiting for this permit, or closed). The loop
        releases the descriptor when it next runs."""
        writer, home = self._writer, self.home  # type: ignore[attr-defined]
        sock, self.transport_socket = self.transport_socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if writer is not None and home is not None and not home.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                home.call_soon_threadsafe(writer.close)
                # The close is scheduled and holds the writer: the connection object, which
                # is dropped now, must not look open (redis-py warns of an unclosed one).
                for stream in ("_reader", "_writer"):  # redis-py's, untyped here
                    setattr(self, stream, None)
        then()


_KEEPERS: dict[type, type] = {}


def _keeping(cls: type) -> type:
    keeper = _KEEPERS.get(cls)
    if keeper is None:
        keeper = _KEEPERS[cls] = type(f"Bounded{cls.__name__}", (_KeepsSocket, cls), {})
    return keeper


class AsyncPool(redis.asyncio.ConnectionPool):
    """The pool of one event loop. Used only from that loop, except ``shed`` (any thread)."""

    budget: ConnectionBudget
    idle: list[Any]
    closed: bool

    @classmethod
    def bounded(cls, url: str, budget: ConnectionBudget, **options: Any) -> AsyncPool:
        pool = cls.from_url(url, **options)
        pool.connection_class = _keeping(pool.connection_class)
        pool.budget, pool.idle, pool.closed = budget, [], False
        budget.register(pool)
        return pool

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        return await self.checkout()

    async def checkout(self) -> Any:
        idle = self.idle
        connection = idle.pop() if idle else None
        if connection is None:
            connection = await self.budget.take_async(self)
            if connection is None:  # a permit: open a new connection under it
                connection = self.connection_class(**self.connection_kwargs)
        if not connection.is_connected:
            try:
                await connection.connect()
            except BaseException:
                await self.discard(connection)
                raise
        return connection

    async def release(self, connection: Any) -> None:
        budget = self.budget
        if self.closed:
            await self.discard(connection)
        elif not budget.contended:
            self.idle.append(connection)
        elif not budget.hand_over(self, connection):
            await self.discard(connection)  # its permit goes to a waiter of another pool

    def put_back(self, connection: Any) -> None:
        if not self.budget.hand_over(self, connection):
            self.idle.append(connection)

    async def discard(self, connection: Any) -> None:
        try:
            with contextlib.suppress(Exception):
                # Waits until the socket is closed (bounded by the connect timeout): the
                # permit must not open a new one before this one is gone.
                await connection.disconnect()
        finally:
            self.budget.give()

    def shed(self) -> bool:
        try:
            connection = self.idle.pop(0)  # the least recently used
        except IndexError:
            return False
        connection.shut_down(self.budget.give)
        return True

    def forget_inherited(self) -> None:
        self.idle = []

    def abandon(self) -> None:
        """Close from outside the pool's loop (it may be closed): idle connections are shut
        down at the socket; any still in use are discarded when they come back."""
        self.closed = True
        while self.shed():
            pass

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Called by ``Redis.aclose``: close every idle connection of this pool."""
        self.closed = True
        idle, self.idle = self.idle, []
        for connection in idle:
            await self.discard(connection)


class SyncPool(redis.ConnectionPool):
    """The pool of the sync face, shared by every thread (``deque`` pops are atomic)."""

    budget: ConnectionBudget
    idle: Any
    closed: bool

    @classmethod
    def bounded(cls, url: str, budget: ConnectionBudget, **options: Any) -> SyncPool:
        pool = cls.from_url(url, **options)
        pool.budget, pool.closed = budget, False
        pool.idle = collections.deque()
        budget.register(pool)
        return pool

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        return self.checkout()

    def checkout(self) -> Any:
        try:
            connection = self.idle.pop()
        except IndexError:
            connection = self.budget.take_sync(self)
            if connection is None:
                connection = self.connection_class(**self.connection_kwargs)
        try:
            connection.connect()  # no-op when connected
        except BaseException:
            self.discard(connection)
            raise
        return connection

    def release(self, connection: Any) -> None:
        budget = self.budget
        if self.closed:
            self.discard(connection)
        elif not budget.contended:
            self.idle.append(connection)
        elif not budget.hand_over(self, connection):
            self.discard(connection)

    def put_back(self, connection: Any) -> None:
        self.release(connection)

    def discard(self, connection: Any) -> None:
        try:
            with contextlib.suppress(Exception):
                connection.disconnect()
        finally:
            self.budget.give()

    def shed(self) -> bool:
        try:
            connection = self.idle.popleft()
        except IndexError:
            return False
        self.discard(connection)
        return True

    def forget_inherited(self) -> None:
        self.idle = collections.deque()

    def disconnect(self, inuse_connections: bool = True) -> None:
        self.closed = True
        while self.shed():
            pass
