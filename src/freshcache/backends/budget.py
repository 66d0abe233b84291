"""One hard bound on the sockets a cache opens to one server, across every pool it has.

A cache talks to a server through several pools: the sync face's, and one per event loop for
the async face (a socket belongs to one loop). Each pool keeps the connections it opened, but
every connection holds a *permit* from this budget from its creation to its close, so the
sockets of all pools together never exceed ``size``, whatever mix of threads, loops, hits,
commands and scripts is running.

A pool that needs a connection when none is idle and no permit is free *waits* (at most
``wait`` seconds, then a timeout: a burst is answered, never refused at once). While it waits,
the budget asks the other pools to close one idle connection each (``Holder.shed``), and a pool
that returns a connection while someone waits either hands it straight to a waiter of the same
pool or closes it, so its permit moves to whoever waits first.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import weakref
from typing import Any, Protocol

from freshcache.backends.base import BackendError


class Holder(Protocol):
    """A pool that holds permits: it can give one back by closing an idle connection."""

    def shed(self) -> bool:
        """Close one idle connection (its permit returns to the budget); False if none."""
        ...

    def put_back(self, connection: Any) -> None:
        """Take back a connection handed to a waiter that was cancelled before using it."""
        ...

    def forget_inherited(self) -> None:
        """In a forked child: drop (never use, never close) the parent's idle connections."""
        ...


class Waiter:
    """One caller waiting for a permit or for a connection of its own pool."""

    __slots__ = ("connection", "event", "future", "granted", "loop", "owner")

    def __init__(self, owner: object, loop: asyncio.AbstractEventLoop | None) -> None:
        self.owner = owner
        self.loop = loop
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.event: threading.Event | None = None if loop else threading.Event()
        self.granted = False  # a permit: the waiter opens a new connection
        self.connection: Any = None  # or a connection handed over by its own pool

    @property
    def served(self) -> bool:
        return self.granted or self.connection is not None

    def wake(self) -> bool:
        """Signal the waiter (from any thread); False if its event loop is gone."""
        if self.event is not None:
            self.event.set()
            return True
        assert self.loop is not None
        assert self.future is not None
        try:
            if _running_loop() is self.loop:  # the same thread: no wake-up of the selector
                self.loop.call_soon(_resolve, self.future)
            else:
                self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed: nobody is waiting there any more
            return False
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ConnectionBudget:
    """``size`` permits shared by every pool of one cache and server; thread-safe."""

    def __init__(self, size: int, wait: float) -> None:
        self.size = size
        self.wait = wait
        self._free = size
        self._lock = threading.Lock()
        self._waiters: collections.deque[Waiter] = collections.deque()
        self._holders: weakref.WeakSet[Any] = weakref.WeakSet()
        _BUDGETS.add(self)

    @property
    def in_use(self) -> int:
        """Permits held: connections open (or opening) in all pools together."""
        return self.size - self._free

    @property
    def contended(self) -> bool:
        return bool(self._waiters)

    def register(self, holder: Holder) -> None:
        self._holders.add(holder)

    def forget_inherited(self) -> None:
        """After a fork, in the child: the parent's sockets are not ours to use (a reply
        could go to either process). Every pool forgets its idle connections and the
        permits start over; new connections are opened as needed."""
        self._lock = threading.Lock()
        self._free = self.size
        self._waiters.clear()
        for holder in list(self._holders):
            holder.forget_inherited()

    def try_take(self) -> bool:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            return False

    def give(self) -> None:
        """Return one permit: to the first waiter still there, else to the free count."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                if waiter.wake():
                    return
                waiter.granted = False
            self._free += 1

    def hand_over(self, owner: Holder, connection: Any) -> bool:
        """A pool returns ``connection``: True if it went straight to a waiter of that pool.
        False: keep it idle, unless ``contended`` (then close it; its permit serves a waiter
        of another pool)."""
        with self._lock:
            if self._waiters and self._waiters[0].owner is owner:
                waiter = self._waiters.popleft()
                waiter.connection = connection
                if waiter.wake():
                    return True
                waiter.connection = None
            return False

    def _enqueue(self, owner: Holder, loop: asyncio.AbstractEventLoop | None) -> Waiter | None:
        """Take a free permit (None), or queue a waiter and ask the other pools to shed."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return None
            waiter = Waiter(owner, loop)
            self._waiters.append(waiter)
            holders = [h for h in self._holders if h is not owner]
        for holder in holders:
            if holder.shed():
                break
        return waiter

    def _abandon(self, waiter: Waiter) -> bool:
        """The waiter gives up: True if it was served in the meantime (it must use that)."""
        with self._lock:
            if waiter.served:
                return True
            self._waiters.remove(waiter)
            return False

    def _timeout(self) -> BackendError:
        return BackendError(
            "timeout", f"no free connection within {self.wait}s (max_connections reached)"
        )

    def take_sync(self, owner: Holder) -> Any:
        """A permit (returns None: open a new connection) or a handed-over connection."""
        waiter = self._enqueue(owner, None)
        if waiter is None:
            return None
        assert waiter.event is not None
        if not waiter.event.wait(self.wait) and not self._abandon(waiter):
            raise self._timeout()
        return waiter.connection

    async def take_async(self, owner: Holder) -> Any:
        """``take_sync`` for a coroutine: waits without blocking its event loop."""
        waiter = self._enqueue(owner, asyncio.get_running_loop())
        if waiter is None:
            return None
        assert waiter.future is not None
        try:
            async with asyncio.timeout(self.wait):
                await waiter.future
        except TimeoutError:
            if not self._abandon(waiter):
                raise self._timeout() from None
        except BaseException:  # cancelled: whatever it was given goes back
            if self._abandon(waiter):
                if waiter.connection is not None:
                    owner.put_back(waiter.connection)
                else:
                    self.give()
            raise
        return waiter.connection


_BUDGETS: weakref.WeakSet[ConnectionBudget] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for budget in list(_BUDGETS):
        budget.forget_inherited()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
