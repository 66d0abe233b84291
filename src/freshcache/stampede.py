"""Stampede control that knows nothing of any backend: single-flight and early refresh.

Single-flight: concurrent misses of one flight key share one computation. Callers key flights
by the cache key *and* the generation tokens they read, so a read that starts after an
invalidation never joins a computation that started before it.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class AsyncSingleFlight:
    """Per event loop: one shared task per flight key; waiters share its result or exception."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Task[Any]]
        ] = weakref.WeakKeyDictionary()
        self.deduplicated = 0

    def _flights(self) -> dict[Hashable, asyncio.Task[Any]]:
        loop = asyncio.get_running_loop()
        flights = self._by_loop.get(loop)
        if flights is None:
            flights = self._by_loop[loop] = {}
        return flights

    def in_flight(self, key: Hashable) -> bool:
        return key in self._flights()

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        flights = self._flights()
        task = flights.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            flights[key] = task

            def _finished(done: asyncio.Task[Any], key: Hashable = key) -> None:
                # Remove the flight when it ends, whoever is still waiting; never a newer one.
                if flights.get(key) is done:
                    del flights[key]
                if not done.cancelled():
                    done.exception()  # retrieved: no "exception never retrieved" if all left

            task.add_done_callback(_finished)
        else:
            self.deduplicated += 1
        # Shielded: a cancelled waiter (even the first) must not cancel the shared computation.
        result: T = await asyncio.shield(task)
        return result


class _Flight:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SyncSingleFlight:
    """The same for threads: the first caller computes, the others block on its event."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        self.deduplicated = 0

    def in_flight(self, key: Hashable) -> bool:
        return key in self._flights

    def run(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                self.deduplicated += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            result: T = flight.result
            return result
        try:
            flight.result = compute()
            return flight.result  # type: ignore[no-any-return]
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()


def should_refresh_early(
    now_ms: float, expiry_ms: int, delta_ms: int, beta: float, rand: Callable[[], float]
) -> bool:
    """The XFetch rule (Vattani et al., 2015): recompute before expiry with a probability that
    grows as expiry nears and with the time the value took to compute (``delta``)."""
    if delta_ms <= 0 or beta <= 0:
        return False
    u = rand()
    if u <= 0.0:
        return True
    return now_ms - delta_ms * beta * math.log(u) >= expiry_ms


def default_rand() -> float:
    return random.random()
