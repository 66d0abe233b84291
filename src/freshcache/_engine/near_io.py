"""The near cache's round trips and waits: background revalidation of hot keys, and the
writer's commit-wait. The engine calls these from its read and invalidation paths; the table
itself (``near.NearCache``) does no I/O.

The writer's wait: with plain leases, ``near_lease`` after the backend acknowledged the write
(the push that follows is only a shortening). With extended leases, a reader may serve an
entry past its own lease on the strength of a heartbeat that came back after every message
published before it, so the writer's message is part of the protocol: it is published after
the write, and the call returns ``near_lease`` after the publish was answered; if it was not
answered, ``near_max_age`` after the acknowledgement, when every entry validated before the
write has run out whatever heartbeats said."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Iterable

from freshcache._engine.keyspace import KeySpace, Located
from freshcache._engine.ledger import Ledger
from freshcache._engine.near import NearCache, payload_of
from freshcache._engine.near_push import Push
from freshcache._engine.rounds import SharedReads
from freshcache._engine.spec import FunctionSpec
from freshcache.backends import BackendError, BackendSet

log = logging.getLogger("freshcache")
#: A writer's publish: when the server answered it (the process's clock), or None.
Published = concurrent.futures.Future[float | None]


class NearIO:
    """What the near cache needs of the network, for one engine."""

    def __init__(
        self,
        near: NearCache,
        backends: BackendSet,
        keys: KeySpace,
        ledger: Ledger,
        shared: SharedReads | None = None,
    ):
        self.near = near
        self.backends = backends
        self.keys = keys
        self.ledger = ledger
        # Invalidation messages between processes, on a reserved key of the namespace (never
        # a user's key: the reserved prefix is refused in key prefixes); with extended leases,
        # heartbeats too, a third of a lease apart while an entry could still be extended.
        self.push = Push(
            backends.url,
            keys.key("__near__"),
            self._pushed,
            timeout=1.0,
            on_subscription=near.subscription,
            on_heartbeat=near.extend,
            heartbeat=near.lease / 3 if near.max_age else 0.0,
            wanted=near.wants_heartbeats,
            clock=lambda: near.clock(),  # the table's clock, also one set later (tests)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._publishing: concurrent.futures.ThreadPoolExecutor | None = None
        # Foreground reads and revalidations share round trips sent after they started: a hot
        # key costs one read in flight and one pending, many keys' revalidations one batch.
        self.shared = shared if shared is not None else SharedReads(backends)

    # -- reads ---------------------------------------------------------------------------------

    def keep(self, loc: Located, values: list[bytes | None], t0: float, epoch: int) -> None:
        """After a read sent at ``t0`` found a valid entry: keep it for a lease from ``t0``."""
        payload = payload_of(values)
        if payload is not None:
            self.near.put(loc.entry, payload, t0, epoch)
            self.push.subscribe()  # from the first entry kept on; a no-op after that

    async def fetch_async(self, loc: Located) -> list[bytes | None]:
        """The foreground read of a key whose near entry is missing or expired: callers that
        arrive together share the next read sent after they arrived, never one in flight."""
        began = self.near.clock()
        values = await self.shared.fetch_async(loc)
        self.near.observe_round_trip(self.near.clock() - began)
        return values

    def revalidate_async(self, spec: FunctionSpec, loc: Located) -> None:
        """Start the background revalidation of a hot key (one per key at a time)."""
        near = self.near
        if loc.entry in near.refreshing:
            return
        near.refreshing.add(loc.entry)
        task = asyncio.get_running_loop().create_task(self._revalidate_async(spec, loc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _revalidate_async(self, spec: FunctionSpec, loc: Located) -> None:
        near = self.near
        try:
            epoch, t0 = near.epoch, near.clock()
            values = await self.shared.fetch_async(loc)
            near.observe_round_trip(near.clock() - t0)
            self._revalidated(spec, loc, values, t0, epoch)
        except BackendError as exc:
            # The entry simply runs out at its deadline; the foreground read will see the error.
            log.debug("freshcache: near revalidation of %s failed: %s", loc.entry, exc)
        finally:
            near.refreshing.discard(loc.entry)

    def revalidate_sync(self, spec: FunctionSpec, loc: Located) -> None:
        near = self.near
        if loc.entry in near.refreshing:
            return
        near.refreshing.add(loc.entry)
        self._executor().submit(self._revalidate_sync, spec, loc)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="freshcache-near"
            )
        return self._pool

    def _publisher(self) -> concurrent.futures.ThreadPoolExecutor:
        # Apart from the revalidations: a writer's wait may hang on its publish.
        if self._publishing is None:
            self._publishing = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="freshcache-near-publish"
            )
        return self._publishing

    def _revalidate_sync(self, spec: FunctionSpec, loc: Located) -> None:
        near = self.near
        try:
            epoch, t0 = near.epoch, near.clock()
            values = self.shared.fetch_sync(loc)
            near.observe_round_trip(near.clock() - t0)
            self._revalidated(spec, loc, values, t0, epoch)
        except BackendError as exc:
            log.debug("freshcache: near revalidation of %s failed: %s", loc.entry, exc)
        finally:
            near.refreshing.discard(loc.entry)

    def _revalidated(
        self, spec: FunctionSpec, loc: Located, values: list[bytes | None], t0: float, epoch: int
    ) -> None:
        self.near.stats(spec.prefix_label).revalidations += 1
        if payload_of(values) is None:
            self.near.drop_pattern(loc.entry)
        else:
            self.keep(loc, values, t0, epoch)

    # -- writes --------------------------------------------------------------------------------

    def dropped(
        self, patterns: Iterable[tuple[str, str | None]]
    ) -> tuple[float, list[str], Published]:
        """Right after the backend acknowledged ``patterns`` (relative, with their stats
        labels): drop this process's matching entries and publish them; returns the
        acknowledgement time, the stats labels the wait is counted under, and the publish
        (when it was answered, or None)."""
        acked = self.near.clock()
        labels: list[str] = []
        message: list[tuple[str, list[str]]] = []
        for pattern, label in patterns:
            absolute = self.keys.key(pattern)
            self.near.drop_pattern(absolute)
            reached = self.ledger.labels(pattern, label)
            labels.extend(reached)
            message.append((absolute, reached))
        published = self._publisher().submit(self.push.publish, message)  # off this thread
        return acked, labels, published

    def _pushed(self, patterns: list[tuple[str, list[str]]]) -> None:
        """Another process invalidated ``patterns``: drop the entries they reach, now."""
        for absolute, labels in patterns:
            dropped = self.near.drop_pattern(absolute)
            for label in labels:
                self.near.stats(label).push_drops += dropped

    def until(self, acked: float, published_at: float | None) -> float:
        """When the writer's call may return (see the module's docstring)."""
        near = self.near
        if not near.max_age:
            return acked + near.lease
        limit = acked + near.max_age
        return limit if published_at is None else min(published_at + near.lease, limit)

    def publish_wait(self, acked: float) -> float:
        """How long a writer waits for its publish before it counts it as lost."""
        return max(0.0, acked + self.near.max_age - self.near.clock())

    def waited(self, labels: list[str], seconds: float) -> None:
        for label in dict.fromkeys(labels):
            self.ledger.metrics.for_prefix(label)  # so that stats() lists the prefix
            self.near.stats(label).observe_wait(seconds)

    async def commit_wait_async(self, patterns: Iterable[tuple[str, str | None]]) -> None:
        acked, labels, published = self.dropped(patterns)
        published_at = None
        if self.near.max_age:
            # asyncio.wait, not wait_for: a publish cancelled by close() must not look like
            # this caller being cancelled.
            waiting = asyncio.wrap_future(published)
            await asyncio.wait((waiting,), timeout=self.publish_wait(acked))
            published_at = answered(waiting)
        remaining = self.until(acked, published_at) - self.near.clock()
        if remaining > 0:
            # The event loop may fire a timer up to a clock tick early: a millisecond more.
            await asyncio.sleep(remaining + 0.001)
        self.waited(labels, self.near.clock() - acked)  # from the acknowledgement on

    def commit_wait_sync(self, patterns: Iterable[tuple[str, str | None]]) -> None:
        acked, labels, published = self.dropped(patterns)
        published_at = None
        if self.near.max_age:
            concurrent.futures.wait((published,), timeout=self.publish_wait(acked))
            published_at = answered(published)
        remaining = self.until(acked, published_at) - self.near.clock()
        if remaining > 0:
            time.sleep(remaining)  # never returns early
        self.waited(labels, self.near.clock() - acked)  # from the acknowledgement on

    def close(self) -> None:
        self.push.close()
        for pool in (self._pool, self._publishing):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._publishing = None


def answered(published: Published | asyncio.Future[float | None]) -> float | None:
    """When a finished publish was answered; None if it was not, or has not finished."""
    if not published.done() or published.cancelled() or published.exception() is not None:
        return None
    return published.result()
