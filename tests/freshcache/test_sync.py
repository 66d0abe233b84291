"""Synchronous functions on every backend (they are supported like async ones):
the same basics as the async suite, and single-flight across threads."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from fc_helpers import Calls, wait_until_sync

from freshcache import Cache


def joined(cache: Cache) -> int:
    """How many callers joined a flight another had started (the engine's single-flight)."""
    return cache.engine.flights.sync_values.deduplicated


def test_hit_miss_and_typed_values(sync_cache: Cache) -> None:
    calls = Calls()

    @sync_cache.cached(ttl=60, key_prefix="booking:stats")
    def get_dashboard_stats(day: dt.date) -> dict[str, Decimal]:
        calls(day)
        return {"revenue": Decimal("120.50")}

    day = dt.date(2025, 10, 11)
    assert get_dashboard_stats(day) == {"revenue": Decimal("120.50")}
    hit = get_dashboard_stats(day)
    assert hit == {"revenue": Decimal("120.50")}
    assert type(hit["revenue"]) is Decimal
    assert get_dashboard_stats(dt.date(2025, 10, 12)) == {"revenue": Decimal("120.50")}
    assert calls.count == 2
    stats = sync_cache.stats()["booking:stats"]
    assert (stats.hits, stats.misses, stats.sets) == (1, 2, 2)


def test_a_cached_none_is_a_hit(sync_cache: Cache) -> None:
    calls = Calls()

    @sync_cache.cached(ttl=60, key_prefix="p")
    def nothing() -> int | None:
        calls()
        return None

    assert nothing() is None
    assert nothing() is None
    assert calls.count == 1


def test_invalidate_sync_and_decorated_sync_writes(sync_cache: Cache) -> None:
    bookings: list[dt.date] = []
    calls = Calls()

    @sync_cache.cached(ttl=60, key_prefix="booking:availability:{day}")
    def slots(day: dt.date) -> int:
        calls(day)
        return sum(1 for d in bookings if d == day)

    @sync_cache.invalidate_cache("booking:*")
    def create_booking(day: dt.date) -> dt.date:
        bookings.append(day)
        return day

    @sync_cache.invalidate_cache("booking:*")
    def failing_write(day: dt.date) -> None:
        raise ValueError("rejected")

    sat, sun = dt.date(2025, 10, 11), dt.date(2025, 10, 12)
    assert (slots(sat), slots(sun)) == (0, 0)
    assert create_booking(sat) == sat
    assert (slots(sat), slots(sun)) == (1, 0)
    assert calls.count == 4
    with pytest.raises(ValueError, match="rejected"):
        failing_write(sat)
    assert (slots(sat), slots(sun)) == (1, 0)
    assert calls.count == 4

    sync_cache.invalidate_sync("booking:availability:2025-10-12:*")
    assert (slots(sat), slots(sun)) == (1, 0)
    assert calls.args[-1] == (sun,)
    assert calls.count == 5


def test_entry_invalidation_warm_and_uncached(sync_cache: Cache) -> None:
    calls = Calls()

    @sync_cache.cached(ttl=60, key_prefix="p")
    def value(n: int) -> int:
        return calls(n)

    assert value(1) == 1
    assert value(2) == 2
    assert value.invalidate(1) is None  # immediate for a sync function, not awaitable
    assert value(1) == 3
    assert value(2) == 2
    assert value.warm(2) == 4
    assert value(2) == 4
    assert value.uncached(2) == 5
    assert value(2) == 4


def test_sync_methods(sync_cache: Cache) -> None:
    calls = Calls()

    class Repo:
        @sync_cache.cached(ttl=60, key_prefix="repo")
        def get(self, n: int) -> int:
            calls(n)
            return n * 10

    repo = Repo()
    assert repo.get(1) == 10
    assert Repo().get(1) == 10
    assert calls.count == 1
    repo.get.invalidate(1)
    assert repo.get(1) == 10
    assert calls.count == 2


def test_the_stale_set_race_with_threads(sync_cache: Cache) -> None:
    version = [1]
    loaded, release = threading.Event(), threading.Event()

    @sync_cache.cached(ttl=60, key_prefix="booking:stats")
    def stats() -> int:
        seen = version[0]
        loaded.set()
        release.wait(5)
        return seen

    @sync_cache.invalidate_cache("booking:*")
    def write() -> None:
        version[0] += 1

    with ThreadPoolExecutor(1) as pool:
        reader = pool.submit(stats)
        assert loaded.wait(5)
        write()
        release.set()
        assert reader.result(5) == 1
    assert stats() == 2


def test_single_flight_across_threads(sync_cache: Cache) -> None:
    release = threading.Event()
    calls = Calls()

    @sync_cache.cached(ttl=60, key_prefix="booking:stats")
    def stats() -> int:
        calls()
        assert release.wait(5)
        return 42

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stats) for _ in range(8)]
        wait_until_sync(lambda: calls.count == 1, "the body started")
        wait_until_sync(
            lambda: joined(sync_cache) == 7,
            "the other threads joined",
        )
        release.set()
        assert [f.result(5) for f in futures] == [42] * 8
    assert calls.count == 1
    assert stats() == 42
    assert calls.count == 1


def test_an_exception_is_shared_across_threads_and_cleared(sync_cache: Cache) -> None:
    release = threading.Event()
    calls = Calls()

    @sync_cache.cached(ttl=60, key_prefix="p")
    def fragile() -> int:
        n = calls()
        assert release.wait(5)
        if n == 1:
            raise LookupError("down")
        return n

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(fragile) for _ in range(4)]
        wait_until_sync(lambda: joined(sync_cache) == 3, "all joined")
        release.set()
        errors = [f.exception(5) for f in futures]
    assert all(isinstance(e, LookupError) for e in errors)
    assert calls.count == 1
    assert fragile() == 2
