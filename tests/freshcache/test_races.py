"""Races between reads and invalidations, driven deterministically with asyncio.Event: the test
decides the interleaving; nothing sleeps hoping that a race happens.

The promise under test: after an invalidation returns, no read that starts later returns a value
computed from data older than that write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fc_helpers import Calls, Raw, wait_until

from freshcache import Cache


def joined(cache: Cache) -> int:
    """How many callers joined a flight another had started (the engine's single-flight)."""
    return cache.engine.flights.async_values.deduplicated


class Store:
    """The database: a version that writes bump, and a read that can be held mid-load."""

    def __init__(self) -> None:
        self.version = 1
        self.gate: asyncio.Event | None = None  # when set: loads wait here after reading
        self.loaded = asyncio.Event()  # set when a load has read the database
        self.calls = Calls()

    def hold(self) -> asyncio.Event:
        self.gate = asyncio.Event()
        self.loaded = asyncio.Event()
        return self.gate

    async def load(self, tag: str = "") -> str:
        seen = self.version  # the row is read here, before the value is returned
        self.calls(tag)
        self.loaded.set()
        if self.gate is not None:
            await self.gate.wait()
        return f"v{seen}"


@pytest.fixture
def db() -> Store:
    return Store()


def stats_reader(cache: Cache, db: Store) -> Any:
    @cache.cached(ttl=300, key_prefix="booking:stats")
    async def get_dashboard_stats() -> str:
        return await db.load()

    return get_dashboard_stats


# -- (a) the stale set, generations -----------------------------------------------------------


async def test_a_reader_that_loaded_before_a_write_never_makes_its_value_visible_after(
    cache: Cache, db: Store
) -> None:
    read = stats_reader(cache, db)

    @cache.invalidate_cache("booking:*")
    async def create_booking() -> None:
        db.version += 1

    gate = db.hold()
    reader = asyncio.create_task(read())
    await db.loaded.wait()  # the reader has read the tokens and the old row
    await create_booking()  # the write commits and invalidates
    gate.set()
    assert await reader == "v1"  # the reader returns what it read: that is fine

    assert await read() == "v2"  # ... but no later read may see it
    assert await read() == "v2"
    assert db.calls.count == 2
    counters = cache.stats()["booking:stats"]
    assert counters.stale == 1  # the old value was stored under the old tokens, and rejected
    assert counters.hits == 1


# -- (b) the stale set, one entry (a lease) -----------------------------------------------------


async def test_a_reader_cannot_store_over_an_entry_invalidated_while_it_loaded(
    cache: Cache, db: Store, raw: Raw
) -> None:
    read = stats_reader(cache, db)
    gate = db.hold()
    reader = asyncio.create_task(read())
    await db.loaded.wait()
    db.version += 1
    await read.invalidate()  # between the reader's load and its store
    gate.set()
    assert await reader == "v1"

    # The late store may land, under the entry token it read, which the invalidation
    # replaced: it is never valid, so the next read loads v2.
    assert await read() == "v2"
    assert await read() == "v2"
    assert db.calls.count == 2


async def test_a_reader_cannot_store_over_a_newer_value(cache: Cache, db: Store) -> None:
    """Two readers miss; the slower one loaded before a write and an invalidation, the faster
    one after them. The slower one's store must not overwrite the newer value."""

    @cache.cached(ttl=300, key_prefix="booking:stats", single_flight=False)
    async def get_dashboard_stats() -> str:  # without single-flight: both readers compute
        return await db.load()

    slow_gate = db.hold()
    slow = asyncio.create_task(get_dashboard_stats())
    await db.loaded.wait()
    db.version += 1
    await get_dashboard_stats.invalidate()
    db.gate = None
    assert await get_dashboard_stats() == "v2"  # the fast reader stores v2
    slow_gate.set()
    assert await slow == "v1"
    assert await get_dashboard_stats() == "v2"
    assert cache.stats()["booking:stats"].bypasses_by_reason == {"lease_lost": 1}


# -- (c) tokens evicted or flushed ------------------------------------------------------------


async def test_missing_tokens_make_old_entries_misses_never_hits(
    cache: Cache, db: Store, raw: Raw
) -> None:
    read = stats_reader(cache, db)
    assert await read() == "v1"
    assert await read() == "v1"
    token_keys = await raw.token_keys()
    assert len(token_keys) == 4  # root, booking, booking:stats, booking:stats:<function>
    db.version += 1  # a write whose invalidation was lost with the tokens

    for doomed in ([token_keys[-1]], token_keys):  # one token, then every token
        await raw.delete(*doomed)
        assert await raw.get(read.key_for()) is not None  # the old entry is still there...
        assert await read() == f"v{db.version}"  # ... and is not served
        db.version += 1
    assert db.calls.count == 3
    counters = cache.stats()["booking:stats"]
    assert counters.hits == 1
    assert (counters.misses, counters.sets) == (3, 3)


async def test_recreated_tokens_are_never_the_old_ones(cache: Cache, db: Store, raw: Raw) -> None:
    read = stats_reader(cache, db)
    await read()
    old = {k: await raw.get(k) for k in await raw.token_keys()}
    await raw.delete(*old)
    await read()
    new = {k: await raw.get(k) for k in await raw.token_keys()}
    assert new.keys() == old.keys()
    assert all(new[k] != old[k] for k in old)


# -- (d) single-flight ------------------------------------------------------------------------


async def test_fifty_concurrent_misses_run_the_body_once(cache: Cache, db: Store) -> None:
    read = stats_reader(cache, db)
    gate = db.hold()
    callers = [asyncio.create_task(read()) for _ in range(50)]
    await db.loaded.wait()
    await wait_until(
        lambda: joined(cache) == 49,
        "all 50 callers share the flight",
    )
    gate.set()
    assert await asyncio.gather(*callers) == ["v1"] * 50
    assert db.calls.count == 1
    counters = cache.stats()["booking:stats"]
    assert (counters.misses, counters.sets) == (50, 1)
    assert await read() == "v1"
    assert db.calls.count == 1


async def test_a_read_after_an_invalidation_never_joins_an_older_flight(
    cache: Cache, db: Store
) -> None:
    read = stats_reader(cache, db)
    gate = db.hold()
    first = asyncio.create_task(read())
    await db.loaded.wait()
    db.version += 1
    await cache.invalidate("booking:*")
    db.gate = None  # the new computation runs through
    assert await read() == "v2"  # a fresh computation, not the flight in progress
    gate.set()
    assert await first == "v1"
    assert await read() == "v2"
    assert db.calls.count == 2


async def test_a_read_after_an_entry_invalidation_never_joins_an_older_flight(
    cache: Cache, db: Store
) -> None:
    read = stats_reader(cache, db)
    gate = db.hold()
    first = asyncio.create_task(read())
    await db.loaded.wait()
    db.version += 1
    await read.invalidate()
    db.gate = None
    later = asyncio.create_task(read())
    await wait_until(lambda: db.calls.count == 2, "the later read computes on its own")
    gate.set()
    assert await first == "v1"
    assert await later == "v2"


async def test_a_cancelled_waiter_does_not_cancel_the_shared_computation(
    cache: Cache, db: Store
) -> None:
    read = stats_reader(cache, db)
    gate = db.hold()
    callers = [asyncio.create_task(read()) for _ in range(5)]
    await db.loaded.wait()
    await wait_until(lambda: joined(cache) == 4, "all callers joined")
    callers[0].cancel()  # the one that started the flight
    callers[3].cancel()
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [results[i] for i in (1, 2, 4)] == ["v1"] * 3
    assert db.calls.count == 1
    await wait_until(lambda: cache.stats()["booking:stats"].sets == 1, "the value is stored")
    assert await read() == "v1"
    assert db.calls.count == 1


async def test_an_exception_is_shared_by_all_waiters_and_the_flight_is_cleared(
    cache: Cache,
) -> None:
    gate = asyncio.Event()
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def get_dashboard_stats() -> int:
        n = calls()
        await gate.wait()
        if n == 1:
            raise LookupError("database is down")
        return n

    callers = [asyncio.create_task(get_dashboard_stats()) for _ in range(10)]
    await wait_until(lambda: calls.count == 1, "the body started")
    await wait_until(lambda: joined(cache) == 9, "all callers joined")
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert len({id(r) for r in results}) == 1  # the same exception, shared
    assert calls.count == 1
    assert await get_dashboard_stats() == 2  # the failed flight is gone; nothing was cached
    assert await get_dashboard_stats() == 2
    assert calls.count == 2


async def test_distinct_keys_fly_separately(cache: Cache) -> None:
    gate = asyncio.Event()
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="slots")
    async def slots(day: int) -> int:
        calls(day)
        await gate.wait()
        return day * 10

    callers = [asyncio.create_task(slots(day % 3)) for day in range(30)]
    await wait_until(lambda: calls.count == 3, "one flight per key")
    await wait_until(lambda: joined(cache) == 27, "the others joined")
    gate.set()
    assert await asyncio.gather(*callers) == [(d % 3) * 10 for d in range(30)]
    assert sorted(a for (a,) in calls.args) == [0, 1, 2]


async def test_single_flight_can_be_turned_off(cache: Cache) -> None:
    gate = asyncio.Event()
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="p", single_flight=False)
    async def value() -> int:
        calls()
        await gate.wait()
        return 1

    callers = [asyncio.create_task(value()) for _ in range(3)]
    await wait_until(lambda: calls.count == 3, "every caller computes")
    gate.set()
    assert await asyncio.gather(*callers) == [1, 1, 1]
    counters = cache.stats()["p"]
    assert counters.sets == 1
    assert counters.bypasses_by_reason == {"lease_lost": 2}  # only the first store wins
