"""The sampled shadow read: proof, in production, that hits are fresh.

With ``verify_rate`` > 0, that fraction of cache hits is recomputed in the background: the
function runs again (uncached), its value goes through the codec as a stored value would, and
is compared with the value the hit returned. Per key prefix, ``stats()`` counts
``shadow_checks`` (comparisons made) and ``stale_hits`` (the fresh value differed while the
entry was still the one served).

What a mismatch means. The entry is fetched again after the recomputation: a mismatch counts
as a stale hit only if the entry and its tokens are byte-for-byte what the hit read, i.e. no
invalidation reached it in between. Then the cached value was served although the source had
changed without an invalidation: a write path with no ``@invalidate_cache`` (or one whose
pattern does not reach this key) — exactly what ``freshcache audit`` looks for. A mismatch is
also counted when the function is not deterministic (time, randomness, a counter) or when the
source changed between the hit and the recomputation and its invalidation has not been issued
yet (a write that commits, then invalidates). It never means the cache served a value after
the invalidation of its key had returned: that would show as an entry that changed.

The caller is never delayed: the check is a task of the caller's event loop (async) or runs on
a small thread pool (sync), at most ``MAX_IN_FLIGHT`` at a time (beyond that a sample is
skipped and counted); every error in a check is swallowed and counted (``shadow_errors``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from freshcache._engine.keyspace import Located
from freshcache._engine.spec import FunctionSpec
from freshcache.backends import BackendSet
from freshcache.metrics import Counters

log = logging.getLogger("freshcache")

#: Checks running at once, per cache (each is one call of the function and one fetch).
MAX_IN_FLIGHT = 4

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


def split_verify_rate(url: str) -> tuple[str, float]:
    """``redis://h/0?verify_rate=0.001`` -> (``redis://h/0``, 0.001): the backends never see
    the option. A URL without it comes back unchanged, with rate 0."""
    if not isinstance(url, str) or "verify_rate" not in url:
        return url, 0.0
    base, _, query_text = url.partition("?")
    query = parse_qsl(query_text, keep_blank_values=True)
    rates = [value for name, value in query if name == "verify_rate"]
    if not rates:
        return url, 0.0
    try:
        rate = float(rates[-1])
    except ValueError:
        raise ValueError(
            f"freshcache: verify_rate={rates[-1]!r} in the cache URL is not a number"
        ) from None
    rest = urlencode([(name, value) for name, value in query if name != "verify_rate"])
    # Rebuilt by hand: urlunsplit would turn "memory://" into "memory:".
    return (f"{base}?{rest}" if rest else base), check_rate(rate)


def check_rate(rate: object) -> float:
    """``verify_rate`` as a float in [0, 1], or a ValueError naming it."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ValueError(
            f"freshcache: verify_rate must be a number between 0 and 1 (a fraction of hits), "
            f"got {rate!r}"
        )
    return float(rate)


class ShadowReads:
    """The shadow reads of one cache (built only when ``verify_rate`` > 0)."""

    def __init__(
        self,
        rate: float,
        backends: BackendSet,
        rand: Callable[[], float] = random.random,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.rate = rate
        self.backends = backends
        self.rand = rand
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until done
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def due(self) -> bool:
        """Is this hit sampled? (Called on the hit path: one random number.)"""
        return self.rand() < self.rate

    def _claim(self, counters: Counters) -> bool:
        with self._lock:
            if self._in_flight >= self.max_in_flight:
                counters.shadow_skipped += 1
                return False
            self._in_flight += 1
            return True

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._idle.notify_all()

    # ------------------------------------------------------------------ async

    def check_async(
        self,
        spec: FunctionSpec,
        args: Args,
        kwargs: Kwargs,
        loc: Located,
        seen: list[bytes | None],
        served: Any,
        counters: Counters,
    ) -> None:
        """Start a background check of a hit (``seen``: what the hit fetched)."""
        if not self._claim(counters):
            return
        task = asyncio.get_running_loop().create_task(
            self._check_async(spec, args, kwargs, loc, seen, served, counters)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_async(
        self,
        spec: FunctionSpec,
        args: Args,
        kwargs: Kwargs,
        loc: Located,
        seen: list[bytes | None],
        served: Any,
        counters: Counters,
    ) -> None:
        try:
            fresh = _as_stored(spec, await spec.func(*args, **kwargs))
            if fresh == served:
                counters.shadow_checks += 1
                return
            now = await self.backends.async_backend.get_many(loc)
            _record_mismatch(spec, now == seen, counters)
        except Exception as exc:
            _record_error(spec, exc, counters)
        finally:
            self._done()

    # ------------------------------------------------------------------ sync

    def check_sync(
        self,
        spec: FunctionSpec,
        args: Args,
        kwargs: Kwargs,
        loc: Located,
        seen: list[bytes | None],
        served: Any,
        counters: Counters,
    ) -> None:
        if not self._claim(counters):
            return
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.max_in_flight, thread_name_prefix="freshcache-shadow"
                    )
                pool = self._pool
        try:
            pool.submit(self._check_sync, spec, args, kwargs, loc, seen, served, counters)
        except RuntimeError:  # the cache was closed meanwhile
            counters.shadow_skipped += 1
            self._done()

    def _check_sync(
        self,
        spec: FunctionSpec,
        args: Args,
        kwargs: Kwargs,
        loc: Located,
        seen: list[bytes | None],
        served: Any,
        counters: Counters,
    ) -> None:
        try:
            fresh = _as_stored(spec, spec.func(*args, **kwargs))
            if fresh == served:
                counters.shadow_checks += 1
                return
            now = self.backends.sync_backend.get_many(loc)
            _record_mismatch(spec, now == seen, counters)
        except Exception as exc:
            _record_error(spec, exc, counters)
        finally:
            self._done()

    # ------------------------------------------------------------------ lifecycle

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no sync check runs (tests, shutdown); False if ``timeout`` passed."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    async def drain(self) -> None:
        """Wait for every check started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.to_thread(self.wait_idle)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _as_stored(spec: FunctionSpec, value: Any) -> Any:
    """The fresh value as a hit would return it: through the codec, both ways."""
    codec = spec.codec
    return codec.decode(codec.encode(value))


def _record_mismatch(spec: FunctionSpec, unchanged: bool, counters: Counters) -> None:
    counters.shadow_checks += 1
    if not unchanged:
        return  # invalidated or refreshed meanwhile: the cache did its job
    counters.stale_hits += 1
    # Loud once per prefix (the counter carries the rate), quiet after.
    (log.warning if counters.stale_hits == 1 else log.debug)(
        "freshcache: stale hit in %s (prefix %s): the recomputed value differs from the one "
        "served and the entry was not invalidated; a write path may lack @invalidate_cache",
        spec.qualname,
        spec.prefix_label,
    )


def _record_error(spec: FunctionSpec, exc: BaseException, counters: Counters) -> None:
    counters.shadow_errors += 1
    log.debug("freshcache: shadow read of %s failed: %r", spec.qualname, exc)
