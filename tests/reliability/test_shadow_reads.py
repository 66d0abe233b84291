"""The sampled shadow read (``verify_rate``): hits recomputed in the background and compared.

A value that changes in the database without an invalidation is counted as a stale hit; one
that did not change is not; one whose invalidation arrived between the hit and the
recomputation is not either (the cache did its job). The caller is never delayed, checks are
bounded, errors are swallowed and counted. The races are driven with events, never sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from freshcache import Cache
from freshcache.contrib.prometheus import render_metrics
from freshcache.staleness import measured_staleness


@pytest.fixture
async def verified(redis_url: str, unique_namespace: str) -> AsyncIterator[Cache]:
    """A cache on the real Redis that re-checks every hit (verify_rate=1)."""
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, verify_rate=1.0)
    yield cache
    await cache.aclose()


def _shadow(cache: Cache):  # type: ignore[no-untyped-def]
    shadow = cache.engine.shadow
    assert shadow is not None
    return shadow


async def test_a_change_without_invalidation_is_counted_as_a_stale_hit(verified: Cache) -> None:
    db = {"price": 10}

    @verified.cached(ttl=300, key_prefix="menu:price")
    async def price() -> int:
        return db["price"]

    assert await price() == 10  # miss, stored
    assert await price() == 10  # hit: re-checked, unchanged
    await _shadow(verified).drain()
    stats = verified.stats()["menu:price"]
    assert (stats.shadow_checks, stats.stale_hits) == (1, 0)

    db["price"] = 12  # a write path that forgot @invalidate_cache
    assert await price() == 10  # the cache serves the old value...
    await _shadow(verified).drain()
    stats = verified.stats()["menu:price"]
    assert (stats.shadow_checks, stats.stale_hits) == (2, 1)  # ...and the check saw it
    assert stats.stale_hit_rate == 0.5
    assert stats.shadow_errors == 0


async def test_nothing_changed_means_no_stale_hit(verified: Cache) -> None:
    @verified.cached(ttl=300, key_prefix="menu:item:{n}")
    async def item(n: int) -> dict[str, object]:
        return {"n": n, "tags": ["a", "b"], "price": 1.5}

    for _ in range(3):
        for n in range(5):
            assert await item(n) == {"n": n, "tags": ["a", "b"], "price": 1.5}
    await _shadow(verified).drain()
    stats = verified.stats()["menu:item:{n}"]
    assert stats.hits == 10
    assert stats.shadow_checks + stats.shadow_skipped == 10
    assert stats.shadow_checks >= 1
    assert stats.stale_hits == 0


async def test_an_invalidation_between_the_hit_and_the_check_is_not_a_stale_hit(
    verified: Cache,
) -> None:
    """The hit is served, then the source changes *and is invalidated* before the background
    recomputation returns: the values differ, but the entry changed too, so not stale."""
    db = {"v": 1}
    recompute_started = asyncio.Event()
    write_done = asyncio.Event()
    hold = [False]

    @verified.cached(ttl=300, key_prefix="held")
    async def value() -> int:
        if hold[0]:  # the shadow recomputation: wait until the write is invalidated
            recompute_started.set()
            await write_done.wait()
        return db["v"]

    assert await value() == 1
    hold[0] = True
    assert await value() == 1  # a hit; its check starts in the background
    await recompute_started.wait()
    db["v"] = 2
    await verified.invalidate("held:*")  # the write path did its job
    write_done.set()
    await _shadow(verified).drain()
    stats = verified.stats()["held"]
    assert (stats.shadow_checks, stats.stale_hits) == (1, 0)


async def test_the_caller_is_not_delayed_and_checks_are_bounded(verified: Cache) -> None:
    """Recomputations block on an event: the hits still return at once (they do not wait
    for their checks), at most MAX_IN_FLIGHT checks run, the others are skipped, counted."""
    release = asyncio.Event()
    hold = [False]

    @verified.cached(ttl=300, key_prefix="slow")
    async def slow() -> str:
        if hold[0]:
            await release.wait()
        return "v"

    assert await slow() == "v"
    hold[0] = True
    shadow = _shadow(verified)
    for _ in range(10):
        assert await slow() == "v"  # returns although every recomputation is blocked
    stats = verified.stats()["slow"]
    assert stats.hits == 10
    assert stats.shadow_skipped == 10 - shadow.max_in_flight
    assert stats.shadow_checks == 0  # none finished: the hits did not wait for them
    release.set()
    await shadow.drain()
    stats = verified.stats()["slow"]
    assert stats.shadow_checks == shadow.max_in_flight
    assert stats.stale_hits == 0


async def test_errors_in_a_check_are_swallowed_and_counted(verified: Cache) -> None:
    fail = [False]

    @verified.cached(ttl=300, key_prefix="flaky")
    async def flaky() -> int:
        if fail[0]:
            raise ConnectionError("the database is down")
        return 7

    assert await flaky() == 7
    fail[0] = True
    assert await flaky() == 7  # the hit; its recomputation raises in the background
    await _shadow(verified).drain()
    stats = verified.stats()["flaky"]
    assert stats.shadow_errors == 1
    assert (stats.shadow_checks, stats.stale_hits) == (0, 0)


def test_sync_functions_are_checked_on_a_thread(redis_url: str, unique_namespace: str) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, verify_rate=1.0)
    db = {"v": "a"}
    caller = threading.get_ident()
    ran_on: list[int] = []

    @cache.cached(ttl=300, key_prefix="sync")
    def value() -> str:
        ran_on.append(threading.get_ident())
        return db["v"]

    try:
        assert value() == "a"
        assert value() == "a"
        db["v"] = "b"  # changed without an invalidation
        assert value() == "a"
        assert _shadow(cache).wait_idle(timeout=60)
        stats = cache.stats()["sync"]
        assert (stats.shadow_checks, stats.stale_hits) == (2, 1)
        assert ran_on[0] == caller
        assert all(ident != caller for ident in ran_on[1:])  # checks never ran on the caller
    finally:
        cache.close()


async def test_stale_hits_in_prometheus_and_read_back(verified: Cache) -> None:
    db = {"v": 1}

    @verified.cached(ttl=300, key_prefix="exported")
    async def value() -> int:
        return db["v"]

    await value()
    await value()
    await _shadow(verified).drain()
    db["v"] = 2
    await value()
    await _shadow(verified).drain()
    text = render_metrics(verified).decode()
    assert "freshcache_shadow_checks_total" in text
    assert "freshcache_stale_hits_total" in text
    (measured,) = [m for m in measured_staleness(text) if m.prefix == "exported"]
    assert (measured.namespace, measured.shadow_checks, measured.stale_hits) == (
        verified.namespace,
        2,
        1,
    )
    assert measured.rate == 0.5


def test_verify_rate_is_off_by_default_and_costs_no_check() -> None:
    cache = Cache("memory://")
    assert cache.verify_rate == 0
    assert cache.engine.shadow is None


async def test_verify_rate_in_the_url(redis_url: str, unique_namespace: str) -> None:
    cache = Cache.from_url(f"{redis_url}?verify_rate=0.25", namespace=unique_namespace)
    assert cache.verify_rate == 0.25
    assert _shadow(cache).rate == 0.25

    @cache.cached(ttl=60, key_prefix="u")
    async def one() -> int:
        return 1

    assert await one() == 1  # the backend got a URL without the option
    assert await one() == 1
    assert cache.stats()["u"].hits == 1
    await cache.aclose()
    memory = Cache("memory://?max_entries=10&verify_rate=1")
    assert memory.verify_rate == 1.0
    # The constructor's option wins over the URL's.
    assert Cache("memory://?verify_rate=1", verify_rate=0).verify_rate == 0


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("memory://", {"verify_rate": 2}),
        ("memory://", {"verify_rate": -0.1}),
        ("memory://", {"verify_rate": "often"}),
        ("memory://", {"verify_rate": True}),
        ("memory://?verify_rate=abc", {}),
        ("memory://?verify_rate=5", {}),
    ],
)
def test_bad_verify_rates_are_named(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="verify_rate"):
        Cache(url, **options)  # type: ignore[arg-type]


def test_measured_staleness_of_a_service_with_shadow_reads_off_is_empty() -> None:
    text = render_metrics(Cache("memory://")).decode()
    assert measured_staleness(text) == []
    with pytest.raises(ValueError, match="not a Prometheus text exposition"):
        measured_staleness("this is { not prometheus text")
