"""Concurrent reads of one key share round trips, but only ones sent after they started.

A caller that finds no read of its key in flight sends one itself. A caller that finds one in
flight does not join it (it was sent before this caller started, so its answer may predate an
invalidation that returned just before): it waits for the *next* read of that key, which is
sent as soon as the one in flight is answered, and shared by every caller that arrived in the
meantime. A hot key therefore costs at most one read in flight and one waiting, whatever the
number of callers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Values = list[bytes | None]
Send = Callable[[], Awaitable[Values]]


class NextRounds:
    """The per-key rounds of one event loop's callers (asyncio only)."""

    def __init__(self) -> None:
        self._in_flight: set[str] = set()
        # key -> (the future of the next read, how to send it)
        self._next: dict[str, tuple[asyncio.Future[Values], Send]] = {}

    async def fetch(self, key: str, send: Send) -> Values:
        if key not in self._in_flight:
            self._in_flight.add(key)
            try:
                return await send()
            finally:
                self._finished(key)
        waiting = self._next.get(key)
        if waiting is None:
            future: asyncio.Future[Values] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)  # even if every waiter was cancelled
            self._next[key] = waiting = (future, send)
        # Shielded: one waiter cancelled does not cancel the read the others wait for.
        return await asyncio.shield(waiting[0])

    def _finished(self, key: str) -> None:
        waiting = self._next.pop(key, None)
        if waiting is None:
            self._in_flight.discard(key)
            return
        future, send = waiting
        # Sent now, after every caller waiting for it started; still "in flight" for newcomers.
        task = asyncio.get_running_loop().create_task(self._send_next(key, future, send))
        task.add_done_callback(_retrieve)

    async def _send_next(self, key: str, future: asyncio.Future[Values], send: Send) -> None:
        try:
            values = await send()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(values)
        finally:
            self._finished(key)


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # marks it retrieved: the waiters, if any, have their own copy
