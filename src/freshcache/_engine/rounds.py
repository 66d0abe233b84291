"""Concurrent reads share round trips, but only ones sent after they started.

A read goes out at once while fewer than ``parallel`` round trips are in flight, none of its
key, and no round is pending. Otherwise it joins the *pending* round: one batch (one MGET on
Redis) that is sent as soon as a round in flight is answered, carrying every key whose callers
arrived in the meantime, each key once. A caller never joins a round already in flight: that
one was sent before the caller started, so its answer may predate an invalidation that
returned just before. Hence a hot key costs at most one read in flight and one pending,
whatever the number of callers, and a thousand callers of a thousand keys cost a few batches
per round-trip time instead of a thousand round trips.

``AsyncRounds`` serves the callers of one event loop (a future belongs to one loop);
``SyncRounds`` serves threads: the first caller to join a pending round sends it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from freshcache.backends import BackendSet
from freshcache.backends.base import BackendError, EntryKeys, split_batch

Values = list[bytes | None]
SendOne = Callable[[EntryKeys], Awaitable[Values]]
SendMany = Callable[[Sequence[EntryKeys]], Awaitable[list[Values]]]
SyncSendOne = Callable[[EntryKeys], Values]
SyncSendMany = Callable[[Sequence[EntryKeys]], list[Values]]


#: Entries per MGET of a batch: a bigger pending round is sent as several MGETs at once, each
#: small enough to be answered (and parsed) well within a per-call timeout of 50 ms.
BATCH_ENTRIES = 64


def parallel_rounds(max_connections: int) -> int:
    """How many round trips one face keeps in flight before reads wait for a shared one:
    enough to overlap a few, few enough that the rest of the pool serves writes and locks."""
    return max(1, min(4, max_connections // 2))


class _Pending:
    """The next round: its keys, each once, in the order the callers arrived."""

    __slots__ = ("after", "done", "error", "index", "keys", "results")

    def __init__(self, after: int = 0) -> None:
        #: (threads) the rounds answered when this one was opened: it is sent after the next.
        self.after = after
        self.index: dict[str, int] = {}
        self.keys: list[EntryKeys] = []
        self.results: list[Values] | None = None
        self.error: BaseException | None = None
        self.done: Any = None  # an asyncio.Future or a threading.Event

    def add(self, keys: EntryKeys) -> int:
        at = self.index.get(keys.entry)
        if at is None:
            at = self.index[keys.entry] = len(self.keys)
            self.keys.append(keys)
        return at


class _Flights:
    """The round trips in flight and the keys they carry (call with the owner's lock held, or
    on the owner's event loop)."""

    __slots__ = ("count", "keys", "parallel")

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.count = 0
        self.keys: dict[str, int] = {}

    def may_send(self, entry: str) -> bool:
        return self.count < self.parallel and entry not in self.keys

    def start(self, entries: Sequence[str]) -> None:
        self.count += 1
        keys = self.keys
        for entry in entries:
            keys[entry] = keys.get(entry, 0) + 1

    def end(self, entries: Sequence[str]) -> None:
        self.count -= 1
        keys = self.keys
        for entry in entries:
            left = keys[entry] - 1
            if left:
                keys[entry] = left
            else:
                del keys[entry]


class AsyncRounds:
    """The shared rounds of one event loop's callers."""

    def __init__(self, send_one: SendOne, send_many: SendMany, parallel: int) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._flights = _Flights(parallel)
        self._pending: _Pending | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def fetch(self, keys: EntryKeys) -> Values:
        flights = self._flights
        entry = keys.entry
        if self._pending is None and flights.may_send(entry):
            flights.start((entry,))
            try:
                return await self._send_one(keys)
            finally:
                flights.end((entry,))
                self._launch()
        pending = self._pending
        if pending is None:
            pending = self._pending = _Pending()
            pending.done = asyncio.get_running_loop().create_future()
            pending.done.add_done_callback(_retrieve)  # even if every waiter was cancelled
        at = pending.add(keys)
        # Shielded: one waiter cancelled does not cancel the round the others wait for.
        results: list[Values] = await asyncio.shield(pending.done)
        return results[at]

    def _launch(self) -> None:
        """A round was answered: send the pending one, if any, now."""
        pending = self._pending
        if pending is None or self._flights.count >= self._flights.parallel:
            return
        self._pending = None
        entries = [k.entry for k in pending.keys]
        self._flights.start(entries)
        task = asyncio.get_running_loop().create_task(self._send_pending(pending, entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_pending(self, pending: _Pending, entries: list[str]) -> None:
        done: asyncio.Future[list[Values]] = pending.done
        try:
            results = await self._send_many(pending.keys)
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(results)
        finally:
            self._flights.end(entries)
            self._launch()


class SyncRounds:
    """The shared rounds of the threads calling one sync face."""

    def __init__(self, send_one: SyncSendOne, send_many: SyncSendMany, parallel: int) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._flights = _Flights(parallel)
        self._pending: _Pending | None = None
        self._answered = 0  # rounds answered so far: a pending round waits for the next one
        self._lock = threading.Condition(threading.Lock())

    @property
    def pending_size(self) -> int:
        """How many keys wait for the pending round (0 when none is pending)."""
        with self._lock:
            return 0 if self._pending is None else len(self._pending.keys)

    def fetch(self, keys: EntryKeys) -> Values:
        entry = keys.entry
        lock = self._lock
        with lock:
            flights = self._flights
            if self._pending is None and flights.may_send(entry):
                flights.start((entry,))
                pending = None
            else:
                pending = self._pending
                leads = pending is None
                if pending is None:
                    pending = self._pending = _Pending(self._answered)
                    pending.done = threading.Event()
                at = pending.add(keys)
        if pending is None:
            try:
                return self._send_one(keys)
            finally:
                with lock:
                    flights.end((entry,))
                    self._answered += 1
                    lock.notify_all()
        if leads:
            self._lead(pending)
        else:
            pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.results is not None
        return pending.results[at]

    def _lead(self, pending: _Pending) -> None:
        """Send the pending round once a round in flight is answered (every caller that
        arrives until then joins it), then hand the answers out."""
        lock = self._lock
        with lock:
            lock.wait_for(
                lambda: (
                    self._answered > pending.after and self._flights.count < self._flights.parallel
                )
            )
            self._pending = None
            entries = [k.entry for k in pending.keys]
            self._flights.start(entries)
        try:
            pending.results = self._send_many(pending.keys)
        except Exception as exc:
            pending.error = exc
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt in this thread): the others get an error of
            # their own and read uncached; this thread's interruption goes on.
            pending.error = BackendError("connection", "a shared read was interrupted")
            raise exc
        finally:
            with lock:
                self._flights.end(entries)
                self._answered += 1
                lock.notify_all()
            pending.done.set()


class SharedReads:
    """The rounds of one cache's reads: one ``AsyncRounds`` per event loop, one ``SyncRounds``
    for threads, sending through whichever faces the backend set holds at the moment."""

    def __init__(self, backends: BackendSet) -> None:
        self.backends = backends
        self.parallel = parallel_rounds(backends.budget.size)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRounds] = (
            weakref.WeakKeyDictionary()
        )
        self._threads = SyncRounds(self._one_sync, self._many_sync, self.parallel)

    def fetch_async(self, keys: EntryKeys) -> Awaitable[Values]:
        loop = asyncio.get_running_loop()
        rounds = self._loops.get(loop)
        if rounds is None:
            rounds = self._loops[loop] = AsyncRounds(self._one, self._many, self.parallel)
        return rounds.fetch(keys)

    def fetch_sync(self, keys: EntryKeys) -> Values:
        return self._threads.fetch(keys)

    def _one(self, keys: EntryKeys) -> Awaitable[Values]:
        return self.backends.async_backend.get_many(keys)

    async def _many(self, batch: Sequence[EntryKeys]) -> list[Values]:
        backend = self.backends.async_backend
        get_batch = getattr(backend, "get_many_batch", None)
        if get_batch is None:
            return list(await asyncio.gather(*(backend.get_many(keys) for keys in batch)))
        if len(batch) <= BATCH_ENTRIES:  # one MGET for the whole batch
            return split_batch(await get_batch([k for keys in batch for k in keys.fetch]), batch)
        chunks = [batch[i : i + BATCH_ENTRIES] for i in range(0, len(batch), BATCH_ENTRIES)]
        replies = await asyncio.gather(
            *(get_batch([k for keys in chunk for k in keys.fetch]) for chunk in chunks)
        )
        pairs = zip(chunks, replies, strict=True)
        return [values for chunk, reply in pairs for values in split_batch(reply, chunk)]

    def _one_sync(self, keys: EntryKeys) -> Values:
        return self.backends.sync_backend.get_many(keys)

    def _many_sync(self, batch: Sequence[EntryKeys]) -> list[Values]:
        backend = self.backends.sync_backend
        get_batch = getattr(backend, "get_many_batch", None)
        if get_batch is None:
            return [backend.get_many(keys) for keys in batch]
        out: list[Values] = []
        for i in range(0, len(batch), BATCH_ENTRIES):
            chunk = batch[i : i + BATCH_ENTRIES]
            out += split_batch(get_batch([k for keys in chunk for k in keys.fetch]), chunk)
        return out


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # marks it retrieved: the waiters, if any, have their own copy
