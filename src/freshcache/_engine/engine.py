"""The engine: the read, store and invalidate paths of one cache, composed from the parts in
this package. ``Cache`` (the public face) builds one and delegates to it; the decorated
functions call it directly.

Read (one round trip): fetch the entry and the current tokens of all its prefixes together.
The entry is valid only if it starts with the stamp of those tokens. On a miss, the tokens read
are the ones stored with the new value, and the store is conditional on the entry being
unchanged since the read (a lease), so a reader that loaded before an invalidation can never
make its value visible after it.

Seams for what comes next: the read path is ``call_async`` / ``call_sync`` (the hit is written
out in each; everything else is ``flows.after_read``; on memory:// a leaner hit path stands in
front, ``_memory_read_*`` with ``hit_memo``, and hands everything else to it); the
invalidation path is ``invalidate_now_async`` / ``invalidate_now_sync``
(``flows.invalidate_now``, one pattern at a time through ``flows.apply``); breaker and kept
invalidations are ``health``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from freshcache._engine import bypass, flows
from freshcache._engine.bypass import Bypass
from freshcache._engine.drivers import Drivers, Flights
from freshcache._engine.health import Health
from freshcache._engine.hit_memo import HitMemo
from freshcache._engine.invalidation import Invalidations, Prepared, Strategy
from freshcache._engine.keyspace import KeySpace, Located
from freshcache._engine.ledger import Ledger
from freshcache._engine.near import NearCache
from freshcache._engine.near import decoded as near_decoded
from freshcache._engine.near_io import NearIO
from freshcache._engine.replayer import Replayer
from freshcache._engine.rounds import SharedReads
from freshcache._engine.rules import NO_VALUE, EntryRules
from freshcache._engine.scope import Scope, current
from freshcache._engine.shadow import ShadowReads
from freshcache._engine.spec import FunctionSpec
from freshcache.backends import BackendError, BackendSet
from freshcache.backends.memory import MemoryStore
from freshcache.codecs import DecodeError
from freshcache.resilience import BreakerState

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
CallPath = Callable[[FunctionSpec, Args, Kwargs], Any]

log = logging.getLogger("freshcache")

#: Pause between attempts while ``close()`` flushes kept invalidations.
FLUSH_RETRY = 0.05

#: Backends whose servers can come back with older data, and say so (``server_identity``).
IDENTIFIED_BACKENDS = frozenset({"redis", "cluster"})


class Engine:
    """One cache's paths. Public attributes are the parts, for tools and tests to read."""

    def __init__(
        self,
        *,
        keys: KeySpace,
        backends: BackendSet,
        strategy: Strategy,
        rules: EntryRules,
        health: Health,
        ledger: Ledger,
        shadow: ShadowReads | None = None,
        near: NearCache | None = None,
    ) -> None:
        self.keys = keys
        self.backends = backends
        self.strategy = strategy
        self.rules = rules
        self.health = health
        self.ledger = ledger
        #: The sampled shadow reads; None when ``verify_rate`` is 0 (one test per hit).
        self.shadow = shadow
        self.clock = health.clock
        self.flights = Flights()
        self.drivers = Drivers(backends, self.flights)
        self.context = flows.Context(rules, health, keys)
        self.invalidations = Invalidations(keys, strategy, health, ledger)
        # A Redis server may come back with older data (a restart from a snapshot, a failover
        # to a lagging replica): its identity is checked before the first read, and again
        # after every failure to reach it (on a cluster: every serving primary's). The naive
        # strategy has no generations to renew.
        health.checks_identity = (
            strategy is Strategy.GENERATION and backends.kind in IDENTIFIED_BACKENDS
        )
        health.unverified = health.checks_identity
        backends.on_new_primaries = health.servers_changed
        # The background replay does not wait for the breaker's cool-down: it makes one
        # attempt per backoff step, and every moment a kept invalidation waits, other
        # processes may read what it invalidates.
        self.replayer = Replayer(health, self._replay_in_background)
        self.invalidations.wake = self.replayer.wake
        #: The near cache (L1) and its round trips; None when ``near_lease`` is 0.
        self.near = near
        #: Concurrent reads share round trips sent after they started (network backends).
        self.shared = None if backends.kind == "memory" else SharedReads(backends)
        self.near_io = None if near is None else NearIO(near, backends, keys, ledger, self.shared)
        # The variant of the read path is chosen once, here: the per-call path has no branch
        # for the strategy (the naive one exists only to be measured against).
        self.call_async: Callable[[FunctionSpec, Args, Kwargs], Awaitable[Any]]
        self.call_sync: CallPath
        #: memory:// with generations: the store read directly and the hits it served
        #: remembered (``_memory_read_*``); None on every other path.
        self.memory_store: MemoryStore | None = None
        self.hit_memo = HitMemo()  # empty on every other path
        store = backends.sync_backend if backends.kind == "memory" else None
        if strategy is Strategy.SCAN:
            self.call_async, self.call_sync = self._naive_async, self._naive_sync
        elif (
            strategy is Strategy.GENERATION
            and isinstance(store, MemoryStore)
            and store.clock is self.clock  # one reading serves the TTLs and the latency
            and shadow is None
            and near is None
        ):
            self.memory_store = store
            self.call_async, self.call_sync = self._memory_read_async, self._memory_read_sync
        else:
            self.call_async, self.call_sync = self._read_async, self._read_sync

    def locate(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Located:
        return spec.locate(self.keys, args, kwargs)

    # ================================================================== reads

    # The hit path is written out for each driver: it is the one place where a generator's
    # microsecond would show. Everything after a read that was not a plain hit is a flow.

    async def _read_async(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        counters = self.ledger.counters(spec)
        if bypass.OPEN.get() and bypass.active(self):
            counters.bypasses[bypass.REASON] += 1
            return await spec.func(*args, **kwargs)
        health = self.health
        breaker = health.breaker
        if health.pending or health.unverified or breaker.state is not BreakerState.CLOSED:
            replaying = bool(health.pending)
            if not (await self.drivers.run_async(flows.recover(self.invalidations))):
                counters.bypasses[health.bypass_reason()] += 1
                return await spec.func(*args, **kwargs)
            if replaying and self.near_io is not None:
                await self.near_io.commit_wait_async((("*", None),))
        loc = spec.locate(self.keys, args, kwargs)
        near = self.near
        if near is not None and spec.near:
            now = near.clock()
            found = near.get(loc.entry, now)
            if found is not None:
                if found.hit_due(now):
                    self.near_io.revalidate_async(spec, loc)  # type: ignore[union-attr]
                try:
                    value = near_decoded(found, spec.codec.decode)  # no shared mutable values
                except DecodeError:
                    near.drop_pattern(loc.entry)
                else:
                    counters.hits += 1
                    near.stats(spec.prefix_label).hits += 1
                    return value
            epoch, t0 = near.epoch, near.clock()
        started = self.clock()
        try:
            if near is not None and spec.near:
                values = await self.near_io.fetch_async(loc)  # type: ignore[union-attr]
            elif (shared := self.shared) is not None:
                values = await shared.fetch_async(loc)
            elif (read_now := self.backends.read_now) is not None:
                values = read_now(loc)
            else:
                values = await self.backends.async_backend.get_many(loc)
        except BackendError as exc:
            health.failed(exc, counters)
            return await spec.func(*args, **kwargs)
        if health.last_error is not None or breaker.state is not BreakerState.CLOSED:
            health.succeeded()
        value, stamp = self.rules.judge(spec, values, counters)
        if value is not NO_VALUE and not (
            spec.early_refresh and self.rules.refresh_due(spec, values[0], stamp)
        ):
            counters.hits += 1
            counters.observe(self.clock() - started)
            shadow = self.shadow
            if shadow is not None and shadow.due():
                shadow.check_async(spec, args, kwargs, loc, values, value, counters)
            if near is not None and spec.near:
                self.near_io.keep(loc, values, t0, epoch)  # type: ignore[union-attr]
            return value
        lookup = flows.Lookup(spec, loc, counters)
        flow = flows.after_read(self.context, lookup, values, value, stamp)
        result = await self.drivers.run_async(flow, spec, args, kwargs)
        counters.observe(self.clock() - started)
        return result

    def _read_sync(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        counters = self.ledger.counters(spec)
        if bypass.OPEN.get() and bypass.active(self):
            counters.bypasses[bypass.REASON] += 1
            return spec.func(*args, **kwargs)
        health = self.health
        breaker = health.breaker
        if health.pending or health.unverified or breaker.state is not BreakerState.CLOSED:
            replaying = bool(health.pending)
            if not (self.drivers.run_sync(flows.recover(self.invalidations))):
                counters.bypasses[health.bypass_reason()] += 1
                return spec.func(*args, **kwargs)
            if replaying and self.near_io is not None:
                self.near_io.commit_wait_sync((("*", None),))
        loc = spec.locate(self.keys, args, kwargs)
        near = self.near
        if near is not None and spec.near:
            now = near.clock()
            found = near.get(loc.entry, now)
            if found is not None:
                if found.hit_due(now):
                    self.near_io.revalidate_sync(spec, loc)  # type: ignore[union-attr]
                try:
                    value = near_decoded(found, spec.codec.decode)  # no shared mutable values
                except DecodeError:
                    near.drop_pattern(loc.entry)
                else:
                    counters.hits += 1
                    near.stats(spec.prefix_label).hits += 1
                    return value
            epoch, t0 = near.epoch, near.clock()
        started = self.clock()
        try:
            shared = self.shared
            if shared is not None:
                values = shared.fetch_sync(loc)
            else:
                values = self.backends.sync_backend.get_many(loc)
        except BackendError as exc:
            health.failed(exc, counters)
            return spec.func(*args, **kwargs)
        if health.last_error is not None or breaker.state is not BreakerState.CLOSED:
            health.succeeded()
        value, stamp = self.rules.judge(spec, values, counters)
        if value is not NO_VALUE and not (
            spec.early_refresh and self.rules.refresh_due(spec, values[0], stamp)
        ):
            counters.hits += 1
            counters.observe(self.clock() - started)
            shadow = self.shadow
            if shadow is not None and shadow.due():
                shadow.check_sync(spec, args, kwargs, loc, values, value, counters)
            if near is not None and spec.near:
                self.near_io.keep(loc, values, t0, epoch)  # type: ignore[union-attr]
            return value
        lookup = flows.Lookup(spec, loc, counters)
        flow = flows.after_read(self.context, lookup, values, value, stamp)
        result = self.drivers.run_sync(flow, spec, args, kwargs)
        counters.observe(self.clock() - started)
        return result

    # The memory:// hit: the store's parts read directly, and judged by identity against the
    # last hit of the entry (``HitMemo``). Anything but a plain, clean hit takes the full path
    # above, which reads again and handles it (bypass, recovery, breaker, early refresh, miss,
    # stale, decode error): it counts nothing here before that.

    async def _memory_read_async(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        # read_now is None once use() put another async face in place.
        value = self._memory_hit(spec, args, kwargs, self.backends.read_now is not None)
        if value is NO_VALUE:
            return await self._read_async(spec, args, kwargs)
        return value

    def _memory_read_sync(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        value = self._memory_hit(
            spec, args, kwargs, self.backends.sync_backend is self.memory_store
        )
        if value is NO_VALUE:
            return self._read_sync(spec, args, kwargs)
        return value

    def _memory_hit(self, spec: FunctionSpec, args: Args, kwargs: Kwargs, face: bool) -> Any:
        """The value of a plain, clean memory:// hit, or ``NO_VALUE`` (counting nothing) for
        the caller's full path to handle; it never waits, so both faces share it. ``face``:
        the store is still the face the caller would read."""
        health = self.health
        if (
            not face
            or bypass.OPEN.get()
            or spec.early_refresh
            or health.pending
            or health.unverified
            or health.last_error is not None
            or health.breaker.state is not BreakerState.CLOSED
        ):
            return NO_VALUE
        loc = spec.locate(self.keys, args, kwargs)
        started = self.clock()
        raw, tokens = self.memory_store.read_parts(loc, started)  # type: ignore[union-attr]
        memo = self.hit_memo
        judged = memo.entries.get(loc.entry)
        if (
            judged is None
            or judged[0] is not raw
            or judged[1] is not tokens
            or judged[3] is not spec
        ):
            judged = memo.judge(loc.entry, raw, tokens, spec, self.ledger.counters(spec))
            if judged is None:
                return NO_VALUE
        try:
            value = judged[4](judged[2])  # decoded per hit: no shared mutable values
        except DecodeError:
            return NO_VALUE
        counters = judged[5]
        counters.hits += 1
        counters.observe(self.clock() - started)
        return value

    async def _naive_async(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        found = await self._bypass_or_lookup_async(spec, args, kwargs)
        if found is None:
            return await spec.func(*args, **kwargs)
        flow = flows.naive(self.context, found)
        return await self.drivers.run_async(flow, spec, args, kwargs)

    def _naive_sync(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        found = self._bypass_or_lookup_sync(spec, args, kwargs)
        if found is None:
            return spec.func(*args, **kwargs)
        return self.drivers.run_sync(flows.naive(self.context, found), spec, args, kwargs)

    async def _bypass_or_lookup_async(
        self, spec: FunctionSpec, args: Args, kwargs: Kwargs
    ) -> flows.Lookup | None:
        counters = self.ledger.counters(spec)
        if bypass.OPEN.get() and bypass.active(self):
            counters.bypasses[bypass.REASON] += 1
            return None
        if not self.health.usable and not await self.drivers.run_async(
            flows.recover(self.invalidations)
        ):
            counters.bypasses[self.health.bypass_reason()] += 1
            return None
        return flows.Lookup(spec, spec.locate(self.keys, args, kwargs), counters)

    def _bypass_or_lookup_sync(
        self, spec: FunctionSpec, args: Args, kwargs: Kwargs
    ) -> flows.Lookup | None:
        counters = self.ledger.counters(spec)
        if bypass.OPEN.get() and bypass.active(self):
            counters.bypasses[bypass.REASON] += 1
            return None
        if not self.health.usable and not self.drivers.run_sync(flows.recover(self.invalidations)):
            counters.bypasses[self.health.bypass_reason()] += 1
            return None
        return flows.Lookup(spec, spec.locate(self.keys, args, kwargs), counters)

    # ================================================================== warming

    async def warm_async(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        if bypass.active(self):  # inside cache.bypass(): computed, not stored
            self.ledger.counters(spec).bypasses[bypass.REASON] += 1
            return await spec.func(*args, **kwargs)
        lookup = flows.Lookup(spec, self.locate(spec, args, kwargs), self.ledger.counters(spec))
        return await self.drivers.run_async(flows.warm(self.context, lookup), spec, args, kwargs)

    def warm_sync(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> Any:
        if bypass.OPEN.get() and bypass.active(self):
            self.ledger.counters(spec).bypasses[bypass.REASON] += 1
            return spec.func(*args, **kwargs)
        lookup = flows.Lookup(spec, self.locate(spec, args, kwargs), self.ledger.counters(spec))
        return self.drivers.run_sync(flows.warm(self.context, lookup), spec, args, kwargs)

    # ================================================================== invalidation

    def deferred(self) -> Scope:
        return Scope(self, self.invalidate_now_async, self.invalidate_now_sync)

    def bypass(self) -> Bypass:
        """A block inside which this engine's reads call the function and store nothing."""
        return Bypass(self)

    def scope(self) -> Scope | None:
        """The innermost open unit of work of this engine, if any."""
        return current(self)

    async def invalidate(self, patterns: Iterable[str], label: str | None = None) -> None:
        prepared = self.invalidations.prepare(patterns, label)
        scope = current(self)
        if scope is not None:
            scope.defer(prepared)
            return
        await self.invalidate_now_async(prepared)

    def invalidate_sync(self, patterns: Iterable[str], label: str | None = None) -> None:
        prepared = self.invalidations.prepare(patterns, label)
        scope = current(self)
        if scope is not None:
            scope.defer(prepared)
            return
        self.invalidate_now_sync(prepared)

    async def invalidate_now_async(self, prepared: list[Prepared]) -> None:
        try:
            applied = await self.drivers.run_async(
                flows.invalidate_now(self.invalidations, prepared)
            )
        except BaseException:
            self._forget_near()
            raise
        if self.near_io is None:
            return
        if len(applied) < len(prepared):
            # Kept (Redis did not answer): nothing of those reached the server to wait for;
            # their replay is announced (_replay_in_background).
            self._forget_near()
        if applied:  # commit-wait: every process's older leases on them run out
            await self.near_io.commit_wait_async(applied)

    def invalidate_now_sync(self, prepared: list[Prepared]) -> None:
        try:
            applied = self.drivers.run_sync(flows.invalidate_now(self.invalidations, prepared))
        except BaseException:
            self._forget_near()
            raise
        if self.near_io is None:
            return
        if len(applied) < len(prepared):  # kept: see invalidate_now_async
            self._forget_near()
        if applied:
            self.near_io.commit_wait_sync(applied)

    def _replay_in_background(self) -> bool:
        """The replayer's attempt. Once kept invalidations are applied, the near caches of
        other processes are told (best effort, nobody waits): their entries would otherwise
        live on to the end of their lease, or of ``near_max_age`` on extensions."""
        replaying = bool(self.health.pending)
        done = self.drivers.run_sync(flows.replay(self.invalidations))
        if done and replaying and self.near_io is not None:
            self.near_io.dropped((("*", None),))
        return done

    def _forget_near(self) -> None:
        """An invalidation kept instead of applied (Redis did not answer, or the call was
        cancelled before its commit-wait): its patterns wait for the replayer, which does not
        wait leases out, so no entry validated before it may be served after it is applied.
        Drop them all now (the epoch moves too, so a read in flight cannot put one back)."""
        if self.near is not None:
            self.near.clear()

    # ================================================================== closing

    async def flush_async(self, limit: float) -> list[str]:
        """Apply what is kept, trying for at most ``limit`` seconds; what is still kept."""
        self.replayer.stop(0)
        deadline = time.monotonic() + limit
        while self.health.pending and time.monotonic() < deadline:
            try:
                done = await asyncio.wait_for(
                    self.drivers.run_async(flows.replay(self.invalidations)),
                    max(deadline - time.monotonic(), 0.001),
                )
            except TimeoutError:
                break
            if not done:
                await asyncio.sleep(FLUSH_RETRY)
        return self._unflushed()

    def flush_sync(self, timeout: float) -> list[str]:
        self.replayer.stop(timeout)
        deadline = time.monotonic() + timeout
        while self.health.pending and time.monotonic() < deadline:
            if not self.drivers.run_sync(flows.replay(self.invalidations)):
                time.sleep(FLUSH_RETRY)
        return self._unflushed()

    def _unflushed(self) -> list[str]:
        left = [pattern for pattern, _ in self.health.pending.snapshot()]
        if left:
            log.error(
                "freshcache: closing with %d invalidation(s) not applied (other processes may "
                "read stale values until their TTL): %s",
                len(left),
                ", ".join(repr(p[:200]) for p in left[:20]),
            )
        return left

    def entry_pattern(self, spec: FunctionSpec, args: Args, kwargs: Kwargs) -> str:
        """The exact key of one call, relative to the namespace (an ENTRY pattern)."""
        return self.locate(spec, args, kwargs).relative
