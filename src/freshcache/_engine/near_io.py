"""The near cache's round trips and waits: background revalidation of hot keys, and the
writer's commit-wait. The engine calls these from its read and invalidation paths; the table
itself (``near.NearCache``) does no I/O."""

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
        # Best-effort invalidation messages between processes, on a reserved key of the
        # namespace (never a user's key: the reserved prefix is refused in key prefixes).
        self.push = Push(backends.url, keys.key("__near__"), self._pushed, timeout=1.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
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

    def dropped(self, patterns: Iterable[tuple[str, str | None]]) -> tuple[float, list[str]]:
        """Right after the backend acknowledged ``patterns`` (relative, with their stats
        labels): drop this process's matching entries; returns the acknowledgement time and
        the stats labels the wait is counted under."""
        acked = self.near.clock()
        labels: list[str] = []
        message: list[tuple[str, list[str]]] = []
        for pattern, label in patterns:
            absolute = self.keys.key(pattern)
            self.near.drop_pattern(absolute)
            reached = self.ledger.labels(pattern, label)
            labels.extend(reached)
            message.append((absolute, reached))
        self._executor().submit(self.push.publish, message)  # off this thread: best effort
        return acked, labels

    def _pushed(self, patterns: list[tuple[str, list[str]]]) -> None:
        """Another process invalidated ``patterns``: drop the entries they reach, now."""
        for absolute, labels in patterns:
            dropped = self.near.drop_pattern(absolute)
            for label in labels:
                self.near.stats(label).push_drops += dropped

    def remaining(self, acked: float) -> float:
        return acked + self.near.lease - self.near.clock()

    def waited(self, labels: list[str], seconds: float) -> None:
        for label in dict.fromkeys(labels):
            self.ledger.metrics.for_prefix(label)  # so that stats() lists the prefix
            self.near.stats(label).observe_wait(seconds)

    async def commit_wait_async(self, patterns: Iterable[tuple[str, str | None]]) -> None:
        acked, labels = self.dropped(patterns)
        remaining = self.remaining(acked)
        if remaining > 0:
            # The event loop may fire a timer up to a clock tick early: a millisecond more.
            await asyncio.sleep(remaining + 0.001)
        self.waited(labels, self.near.clock() - acked)  # from the acknowledgement on

    def commit_wait_sync(self, patterns: Iterable[tuple[str, str | None]]) -> None:
        acked, labels = self.dropped(patterns)
        remaining = self.remaining(acked)
        if remaining > 0:
            time.sleep(remaining)  # never returns early
        self.waited(labels, self.near.clock() - acked)  # from the acknowledgement on

    def close(self) -> None:
        self.push.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
