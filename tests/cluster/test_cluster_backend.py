"""freshcache on a real Redis Cluster (the session's 3 primaries + 3 replicas): the promises of
invalidation by generation tokens where keys live in different slots, and what a hit costs on
the wire."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable

import pytest
from cluster_helpers import TEST_TIMEOUT, ClusterView, delta

from freshcache import BackendError, Cache
from freshcache.backends.base import EntryKeys
from freshcache.backends.cluster import AsyncClusterBackend, ShardLayout, SyncClusterBackend

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


def layout_of(cache: Cache) -> ShardLayout:
    backend = cache.backends.sync_backend
    assert isinstance(backend, SyncClusterBackend)
    return backend.layout


def shards_of(cache: Cache, keys: list[str]) -> list[int]:
    layout = layout_of(cache)
    return [layout.shard_of(key) for key in keys]


# -- reads ------------------------------------------------------------------------------------


async def test_miss_then_hit_and_the_entry_lives_in_its_shard(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    cache = make_cache()
    runs = collections.Counter[int]()

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(n: int) -> dict[str, int]:
        runs[n] += 1
        return {"n": n}

    assert await stats(1) == {"n": 1}
    assert await stats(1) == {"n": 1}
    assert runs[1] == 1
    counters = cache.stats()["booking:stats"]
    assert (counters.hits, counters.misses, counters.sets, counters.errors) == (1, 1, 1, 0)

    key = stats.key_for(1)
    layout = cluster_view.layout
    physical = layout.physical(key)
    assert cluster_view.all_physical_keys(cache.namespace, "booking:*") == [physical]
    # The tokens it was checked against are in the same slot, one copy per prefix.
    tokens = cluster_view.all_physical_keys(cache.namespace, "__gen__*")
    tag = layout.tags[layout.shard_of(key)]
    assert tokens == sorted(
        tag + t
        for t in (
            f"{cache.namespace}:__gen__",
            f"{cache.namespace}:__gen__:booking",
            f"{cache.namespace}:__gen__:booking:stats",
            f"{cache.namespace}:__gen__:booking:stats:{stats.spec.qualname}",
        )
    )
    assert cluster_view.raw_get(physical) is not None


def test_sync_miss_then_hit(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    runs: list[int] = []

    @cache.cached(ttl=60, key_prefix="booking:sync")
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    assert [square(n) for n in range(8)] == [n * n for n in range(8)]
    assert [square(n) for n in range(8)] == [n * n for n in range(8)]
    assert sorted(runs) == list(range(8))
    assert cache.stats()["booking:sync"].hits == 8


async def test_a_hit_is_one_mget_on_one_node(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    """The hit path is one round trip: one MGET, on the one node that serves the entry's shard,
    and no other command anywhere (INFO commandstats summed over the primaries)."""
    cache = make_cache()

    @cache.cached(ttl=60, key_prefix="booking:availability:{day}")
    async def availability(day: str, n: int) -> list[int]:
        return [n]

    calls = [(f"2025-10-{d:02}", n) for d in range(1, 5) for n in range(10)]
    for day, n in calls:
        await availability(day, n)
    entries = [availability.key_for(day, n) for day, n in calls]
    assert len(set(shards_of(cache, entries))) > 3  # spread over several shards and nodes

    before = cluster_view.commandstats()
    for day, n in calls:
        assert await availability(day, n) == [n]
    after = cluster_view.commandstats()

    assert cache.stats()["booking:availability:{day}"].hits == len(calls)
    per_node = delta(before, after)
    assert sum(sum(c.values()) for c in per_node.values()) == len(calls)
    assert sum(c["mget"] for c in per_node.values()) == len(calls)
    expected = collections.Counter(
        cluster_view.owner_of_shard(s) for s in shards_of(cache, entries)
    )
    assert {node: c["mget"] for node, c in per_node.items() if c["mget"]} == expected


# -- invalidation -----------------------------------------------------------------------------


async def test_one_generation_bump_invalidates_entries_in_every_shard(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    cache = make_cache()
    version = {"v": 1}

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(n: int) -> tuple[int, int]:
        return (n, version["v"])

    @cache.cached(ttl=60, key_prefix="booking:availability:{day}")
    async def availability(day: str) -> tuple[str, int]:
        return (day, version["v"])

    @cache.invalidate_cache("booking:*")
    async def create_booking() -> None:
        version["v"] += 1

    days = [f"2025-10-{d:02}" for d in range(1, 21)]
    for n in range(20):
        await stats(n)
    for day in days:
        await availability(day)
    keys = [stats.key_for(n) for n in range(20)] + [availability.key_for(d) for d in days]
    shards = set(shards_of(cache, keys))
    assert len(shards) >= 8
    assert len({cluster_view.owner_of_shard(s) for s in shards}) == len(cluster_view.primaries())

    layout = cluster_view.layout
    copies = layout.copies(f"{cache.namespace}:__gen__:booking")
    before = [cluster_view.raw_get(copy) for copy in copies]
    await create_booking()

    # The bump rewrote the prefix's token in every shard that holds one (all with one new
    # value) and created none where no entry reads it.
    after = [cluster_view.raw_get(copy) for copy in copies]
    assert [shard for shard, value in enumerate(after) if value is not None] == sorted(shards)
    assert len({value for value in after if value is not None}) == 1
    assert not set(before) & set(after) - {None}
    assert all(
        DAY_MS - 60_000 < cluster_view.raw_pttl(copy) <= DAY_MS
        for copy, value in zip(copies, after, strict=True)
        if value is not None
    )
    assert [await stats(n) for n in range(20)] == [(n, 2) for n in range(20)]
    assert [await availability(d) for d in days] == [(d, 2) for d in days]
    assert cache.stats()["booking:stats"].stale == 20


@pytest.mark.parametrize(("wait_replicas", "waits"), [(None, 1), ("0", 0)])
async def test_an_invalidation_is_one_pipeline_per_primary(
    make_cache: Callable[..., Cache],
    cluster_view: ClusterView,
    wait_replicas: str | None,
    waits: int,
) -> None:
    """A bump writes the token copy of every shard: one pipeline per primary, each with WAIT
    for that primary's replicas unless ``wait_replicas=0``, and nothing else."""
    options = {} if wait_replicas is None else {"wait_replicas": wait_replicas}
    cache = make_cache(**options)
    await cache.invalidate("warm:*")  # reads the slot map
    before = cluster_view.commandstats()
    for _ in range(10):
        await cache.invalidate("booking:*")
    per_node = delta(before, cluster_view.commandstats())
    layout = cluster_view.layout
    shards_per_node = collections.Counter(
        cluster_view.owner_of_shard(s) for s in range(layout.shards)
    )
    assert {node: c["set"] for node, c in per_node.items()} == {
        node: 10 * n for node, n in shards_per_node.items()
    }
    assert {node: c["wait"] for node, c in per_node.items()} == dict.fromkeys(
        shards_per_node, 10 * waits
    )
    assert all(set(c) <= {"set", "wait"} for c in per_node.values())


def test_sync_generation_bump_across_slots(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    version = {"v": 1}

    @cache.cached(ttl=60, key_prefix="report:daily")
    def report(n: int) -> tuple[int, int]:
        return (n, version["v"])

    assert [report(n) for n in range(30)] == [(n, 1) for n in range(30)]
    assert len(set(shards_of(cache, [report.key_for(n) for n in range(30)]))) >= 8
    version["v"] = 2
    cache.invalidate_sync("report:*")
    assert [report(n) for n in range(30)] == [(n, 2) for n in range(30)]


async def test_entry_invalidation_is_a_tombstone_in_the_entry_shard(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    cache = make_cache()
    version = {"v": 1}

    @cache.cached(ttl=60, key_prefix="booking:one")
    async def one(n: int) -> tuple[int, int]:
        return (n, version["v"])

    for n in range(6):
        await one(n)
    version["v"] = 2
    await one.invalidate(3)

    assert [await one(n) for n in range(6)] == [(n, 2 if n == 3 else 1) for n in range(6)]
    raw = cluster_view.raw_get(cluster_view.layout.physical(one.key_for(3)))
    assert raw is not None
    assert not raw.startswith(b"~")  # recomputed over the tombstone, which held the lease


async def test_scan_fallback_deletes_on_every_primary_and_keeps_tokens(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    cache = make_cache()
    version = {"v": 1}

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(n: int) -> tuple[int, int]:
        return (n, version["v"])

    @cache.cached(ttl=60, key_prefix="other:stats")
    async def other(n: int) -> tuple[int, int]:
        return (n, version["v"])

    for n in range(40):
        await stats(n)
        await other(n)
    per_node = cluster_view.entries(cache.namespace, "*:stats:*")
    assert all(len(keys) > 0 for keys in per_node.values())  # on every primary
    tokens = cluster_view.all_physical_keys(cache.namespace, "__gen__*")

    version["v"] = 2
    await cache.invalidate("*:stats:*")  # not segment-aligned: SCAN + UNLINK

    assert all(keys == [] for keys in cluster_view.entries(cache.namespace).values())
    assert cluster_view.all_physical_keys(cache.namespace, "__gen__*") == tokens
    assert [await stats(n) for n in range(40)] == [(n, 2) for n in range(40)]
    assert [await other(n) for n in range(40)] == [(n, 2) for n in range(40)]
    assert sum(s.invalidations.get("scan", 0) for s in cache.stats().values()) == 1


def test_sync_scan_fallback(make_cache: Callable[..., Cache], cluster_view: ClusterView) -> None:
    cache = make_cache()

    @cache.cached(ttl=60, key_prefix="a:stats")
    def stats(n: int) -> int:
        return n

    for n in range(30):
        stats(n)
    assert len(cluster_view.all_physical_keys(cache.namespace, "a:*")) == 30
    cache.invalidate_sync("*:stats:*")
    assert cluster_view.all_physical_keys(cache.namespace, "a:*") == []


async def test_keys_lists_logical_names_across_primaries(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(n: int) -> int:
        return n

    for n in range(25):
        await stats(n)
    listed = await cache.keys("booking:*", limit=1000)
    assert sorted(listed) == sorted(stats.key_for(n) for n in range(25))
    # At most the limit (the core drops token keys from what the backend found).
    assert 0 < len(await cache.keys("*", limit=10)) <= 10


# -- tokens -----------------------------------------------------------------------------------


async def test_tokens_outlive_the_entries_that_reference_them(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    cache = make_cache()

    @cache.cached(ttl=3 * 24 * 3600, key_prefix="long:lived")
    async def long_lived(n: int) -> int:
        return n

    await long_lived(1)
    key = long_lived.key_for(1)
    layout = cluster_view.layout
    entry_ttl = cluster_view.raw_pttl(layout.physical(key))
    assert entry_ttl > 2 * DAY_MS
    tokens = cluster_view.all_physical_keys(cache.namespace, "__gen__*")
    assert len(tokens) == 4
    for token in tokens:
        assert token.startswith(layout.tags[layout.shard_of(key)])
        assert cluster_view.raw_pttl(token) >= 2 * entry_ttl - 60_000  # extended by the store


async def test_a_missing_token_copy_makes_its_shard_miss_never_hit(
    make_cache: Callable[..., Cache], cluster_view: ClusterView
) -> None:
    cache = make_cache()
    runs: list[int] = []

    @cache.cached(ttl=60, key_prefix="evict:me")
    async def value(n: int) -> int:
        runs.append(n)
        return n

    await value(1)
    key = value.key_for(1)
    tag = cluster_view.layout.tags[cluster_view.layout.shard_of(key)]
    # Evicted: the copy of the prefix token in the entry's shard disappears.
    owner = cluster_view.owner_of_shard(cluster_view.layout.shard_of(key))
    cluster_view.client(owner).unlink(f"{tag}{cache.namespace}:__gen__:evict")
    assert await value(1) == 1
    assert runs == [1, 1]  # recomputed: a missing token means invalid
    assert await value(1) == 1
    assert runs == [1, 1]


# -- locks ------------------------------------------------------------------------------------


async def test_lock_acquire_and_release_on_the_cluster(redis_cluster_url: str) -> None:
    backend = AsyncClusterBackend(redis_cluster_url, TEST_TIMEOUT, 10, 1.0)
    try:
        key = "t-lock:__lock__:booking:stats:f:1:abcd"
        assert await backend.acquire_lock(key, b"me", 5000)
        assert not await backend.acquire_lock(key, b"you", 5000)
        await backend.release_lock(key, b"you")  # not the owner: nothing happens
        assert not await backend.acquire_lock(key, b"you", 5000)
        await backend.release_lock(key, b"me")
        assert await backend.acquire_lock(key, b"you", 5000)
        await backend.release_lock(key, b"you")
        assert await backend.ttl_ms(key) is None
    finally:
        await backend.aclose()


async def test_distributed_lock_makes_one_caller_of_two_processes_compute(
    make_cache: Callable[..., Cache],
) -> None:
    # Two Caches are two processes: single-flight cannot join them, only the lock can.
    first, second = make_cache(), make_cache()
    runs: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    def declare(cache: Cache, name: str):  # type: ignore[no-untyped-def]
        @cache.cached(ttl=60, key_prefix="locked:stats", lock=True, lock_timeout=5)
        async def compute(n: int) -> int:
            runs.append(name)
            started.set()
            await release.wait()
            return n * 10

        return compute

    one, two = declare(first, "first"), declare(second, "second")
    task = asyncio.create_task(one(7))
    await started.wait()
    waiter = asyncio.create_task(two(7))

    def waiting_on_the_lock() -> bool:
        stats = second.stats().get("locked:stats")
        return stats is not None and stats.lock_waits == 1

    # Until the second process is waiting on the lock (observed, not slept for: a loaded
    # machine may take any time to get there), and not computing.
    for _ in range(30_000):
        if waiting_on_the_lock() or waiter.done():
            break
        await asyncio.sleep(0.001)
    assert waiting_on_the_lock()
    assert runs == ["first"]
    release.set()
    assert await task == 70
    assert await waiter == 70
    assert runs == ["first"]
    assert second.stats()["locked:stats"].lock_waits == 1


# -- connections ------------------------------------------------------------------------------


async def test_callers_beyond_max_connections_wait_instead_of_failing(
    make_cache: Callable[..., Cache],
) -> None:
    # The pool wait is bounded generously: the promise is waiting instead of failing, not
    # how soon two connections serve 600 callers on a loaded machine.
    cache = make_cache(max_connections=2, pool_timeout=60.0)

    @cache.cached(ttl=60, key_prefix="busy:stats")
    async def busy(n: int) -> int:
        return n

    for n in range(30):
        await busy(n)
    results = await asyncio.gather(*(busy(n % 30) for n in range(600)))
    assert results == [n % 30 for n in range(600)]
    counters = cache.stats()["busy:stats"]
    assert counters.errors == 0
    assert counters.hits == 600


def test_the_async_backend_follows_the_event_loop(redis_cluster_url: str) -> None:
    """Each asyncio.run() is a new loop: the backend gets new clients (and a map) for it. As
    with any asyncio client, the cache is closed before its loop ends."""
    cache = Cache.from_url(redis_cluster_url, namespace="t-loops", timeout=TEST_TIMEOUT)
    runs: list[int] = []

    @cache.cached(ttl=60, key_prefix="loops")
    async def value(n: int) -> int:
        runs.append(n)
        return n

    async def use() -> list[int]:
        try:
            return [await value(n) for n in range(3)]
        finally:
            await cache.aclose()

    assert asyncio.run(use()) == [0, 1, 2]
    assert asyncio.run(use()) == [0, 1, 2]
    assert runs == [0, 1, 2]  # the second loop hit what the first one stored

    async def finish() -> None:
        await cache.invalidate("*")
        await cache.aclose()

    asyncio.run(finish())
    assert cache.stats()["loops"].errors == 0


def test_sync_backend_is_thread_safe(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache(max_connections=4)

    @cache.cached(ttl=60, key_prefix="threads")
    def value(n: int) -> int:
        return n

    failures: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(50):
                assert value((n + offset) % 40) == (n + offset) % 40
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert cache.stats()["threads"].errors == 0


# -- unreachable ------------------------------------------------------------------------------


async def test_an_unreachable_cluster_is_a_backend_error_and_callers_run_uncached() -> None:
    from support.servers import find_free_port

    url = f"redis+cluster://127.0.0.1:{find_free_port()},127.0.0.1:{find_free_port()}"
    backend = AsyncClusterBackend(url, 0.05, 10, 1.0)
    with pytest.raises(BackendError) as caught:
        await backend.get_many(EntryKeys.of("ns:a:f:1", ["ns:__gen__"]))
    assert caught.value.kind == "connection"
    await backend.aclose()

    cache = Cache.from_url(url, namespace="down", timeout=0.05)

    @cache.cached(ttl=60, key_prefix="down")
    async def value(n: int) -> int:
        return n

    assert [await value(n) for n in range(10)] == list(range(10))  # never raises
    await cache.invalidate("down:*")  # kept for replay, never raises
    assert cache.health()["pending_invalidations"] == 1
    assert cache.breaker.opened_count >= 1
    await cache.aclose()
