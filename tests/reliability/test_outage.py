"""Redis going away: reads fall back to the function, the breaker stops paying timeouts,
invalidations issued during the outage are kept and replayed, nothing stale afterwards.

The outage is real: a TCP proxy in front of a real redis-server refuses connections, or
accepts them and never answers (a black hole), or the server itself is stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from freshcache import Cache
from freshcache.resilience import BreakerState
from support.proxy import FaultProxy
from support.servers import RedisServer

TIMEOUT = 0.05


class Database:
    """The source of truth the cached function reads: a version that writes bump."""

    def __init__(self) -> None:
        self.version = 1
        self.reads = 0


def _build(cache: Cache, db: Database) -> tuple[Callable[..., object], Callable[..., object]]:
    @cache.cached(ttl=300, key_prefix="booking:stats")
    async def read() -> int:
        db.reads += 1
        return db.version

    @cache.invalidate_cache("booking:*")
    async def write() -> int:
        db.version += 1
        return db.version

    return read, write


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
async def test_reads_stay_correct_and_cheap_while_redis_is_unreachable(
    private_redis: RedisServer, fault_proxy: Callable[[str, int], FaultProxy], mode: str
) -> None:
    proxy = fault_proxy(*private_redis.address)
    # A timeout a loaded machine always meets, so the value is cached before the outage; a
    # low breaker threshold keeps the blackhole's cost to two timeouts.
    cache = Cache.from_url(
        proxy.url, namespace="outage", timeout=1.0, breaker_threshold=2, breaker_cooldown=60
    )
    db = Database()
    read, write = _build(cache, db)
    assert await read() == 1
    assert await read() == 1
    assert db.reads == 1  # cached

    proxy.set_mode(mode)
    assert await write() == 2  # the write never fails because the cache is down
    assert cache.health()["pending_invalidations"] == 1

    for _ in range(10):
        assert await read() == 2  # never the old cached 1: pending invalidation => bypass
    assert cache.breaker.state is BreakerState.OPEN
    # Once the breaker is open no call touches the network: no new backend error and no new
    # connection attempt, however many reads (the latency this saves is in benchmarks/).
    errors_before = cache.stats()["booking:stats"].errors
    accepted_before = proxy.connections_accepted
    bypasses_before = cache.stats()["booking:stats"].bypasses
    for _ in range(50):
        assert await read() == 2
    stats = cache.stats()["booking:stats"]
    assert stats.errors == errors_before
    assert proxy.connections_accepted == accepted_before
    assert stats.bypasses == bypasses_before + 50
    await cache.aclose()


async def test_invalidation_during_outage_is_replayed_before_cached_reads_resume(
    private_redis: RedisServer, fault_proxy: Callable[[str, int], FaultProxy]
) -> None:
    proxy = fault_proxy(*private_redis.address)
    clock = [0.0]
    # A timeout a loaded machine always meets: the replay after the outage must succeed on
    # its first try for the counts below (the blackhole costs one timeout per failed call).
    cache = Cache.from_url(
        proxy.url, namespace="outage", timeout=2.0, breaker_cooldown=5, clock=lambda: clock[0]
    )
    db = Database()
    read, write = _build(cache, db)
    assert await read() == 1  # cached before the outage

    proxy.set_mode("blackhole")
    await write()  # version 2; its invalidation cannot reach Redis
    for _ in range(6):
        assert await read() == 2
    assert cache.breaker.state is BreakerState.OPEN
    assert cache.health()["pending_invalidations"] == 1

    proxy.set_mode("pass")
    clock[0] += 10  # past the cool-down: the next call probes, replays, then reads
    assert await read() == 2  # not the value cached before the outage
    # The replay is the caller's or the background replayer's, whichever gets there first;
    # until it is applied every read bypasses. The bound is for a broken build, not a speed.
    async with asyncio.timeout(60):
        while cache.health()["pending_invalidations"]:
            await asyncio.sleep(0.01)
            assert await read() == 2
    assert cache.breaker.state is BreakerState.CLOSED
    reads_before = db.reads
    assert await read() == 2  # and now it is cached again
    assert db.reads == reads_before
    kinds = [event["kind"] for event in cache.recent_invalidations()]
    assert "replayed" in kinds
    await cache.aclose()


async def test_server_restart_loses_tokens_and_nothing_stale_is_served(
    private_redis: RedisServer,
) -> None:
    cache = Cache.from_url(private_redis.url, namespace="restart", timeout=0.5)
    db = Database()
    read, _write = _build(cache, db)
    assert await read() == 1
    private_redis.restart()  # an empty server on the same port, as after a crash without AOF
    db.version = 7
    for _ in range(10):  # the first calls may fail on dead pooled connections: still answered
        assert await read() == 7
    await cache.aclose()


async def test_a_decorated_write_and_imperative_invalidate_never_raise_when_down(
    private_redis: RedisServer, fault_proxy: Callable[[str, int], FaultProxy]
) -> None:
    proxy = fault_proxy(*private_redis.address)
    cache = Cache.from_url(proxy.url, namespace="outage", timeout=TIMEOUT)
    db = Database()
    _read, write = _build(cache, db)
    proxy.set_mode("refuse")
    await write()
    await cache.invalidate("booking:stats:*")
    await cache.invalidate("booking:stats:*")  # deduplicated
    assert cache.health()["pending_invalidations"] == 2  # booking:* and booking:stats:*
    assert cache.health()["reachable"] is False
    await cache.aclose()


async def test_pending_invalidations_are_bounded_and_collapse_to_everything(
    private_redis: RedisServer, fault_proxy: Callable[[str, int], FaultProxy]
) -> None:
    proxy = fault_proxy(*private_redis.address)
    cache = Cache.from_url(
        proxy.url, namespace="outage", timeout=TIMEOUT, max_pending_invalidations=5
    )
    proxy.set_mode("refuse")
    for day in range(20):
        await cache.invalidate(f"booking:availability:2025-10-{day + 1:02d}:*")
    assert cache.pending.snapshot()[0][0] == "*"  # coarser, never lost
    assert len(cache.pending) == 1
    await cache.aclose()


async def test_1000_concurrent_callers_get_answers_through_a_small_pool(
    redis_url: str, unique_namespace: str
) -> None:
    # The promise is that callers beyond the pool *wait* for a connection instead of failing:
    # the waits are bounded generously, so a busy machine cannot turn the verdict into a race.
    cache = Cache.from_url(
        redis_url, namespace=unique_namespace, max_connections=10, timeout=5.0, pool_timeout=60.0
    )

    @cache.cached(ttl=60, key_prefix="load")
    async def value(i: int) -> int:
        await asyncio.sleep(0.001)
        return i * 2

    results = await asyncio.gather(*(value(i % 100) for i in range(1000)))
    assert results == [(i % 100) * 2 for i in range(1000)]
    stats = cache.stats()["load"]
    assert stats.errors == 0, dict(stats.errors_by_kind)
    assert stats.hits + stats.misses == 1000
    await cache.aclose()
