"""A bound on commands in flight that *waits* for a free connection instead of failing.

redis-py 8's asyncio pool raises past its cap, and its blocking pool pays for a condition and
a timeout on every command; an uncontended semaphore costs next to nothing on the hit path.
Callers beyond ``size`` wait at most ``wait`` seconds, then get a timeout: a burst of callers
is answered, never refused at once with "pool exhausted".
"""

from __future__ import annotations

import asyncio

from freshcache.backends.base import BackendError


class ConnectionSlots:
    __slots__ = ("_semaphore", "_wait")

    def __init__(self, size: int, wait: float) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self._wait = wait

    async def __aenter__(self) -> None:
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # a free slot: returns without suspending
            return
        try:
            async with asyncio.timeout(self._wait):
                await semaphore.acquire()
        except TimeoutError:
            raise BackendError(
                "timeout", f"no free connection within {self._wait}s (max_connections reached)"
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        self._semaphore.release()
