"""An exact-key invalidation (``func.invalidate(...)``) must hold whatever Redis evicts or an
operator deletes afterwards: a reader that loaded before it never makes its value visible.

Each test holds a reader mid-load (its body waits on an event), invalidates the entry, makes
Redis lose exactly what the invalidation wrote (real eviction under ``maxmemory`` with the
policy named, or UNLINK by hand), releases the reader, and checks that no later read returns
the old value. The memory backend's own LRU is driven from 16 threads.
"""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
import redis

from freshcache import Cache
from support.cluster import RedisCluster
from support.redis_server import RedisServer

from .invalidation_faults import HeldRead, Versions, evict, snapshot, written_between


@pytest.mark.parametrize("loss", ["allkeys-lru", "volatile-lru", "allkeys-random", "deleted"])
async def test_reader_mid_load_never_serves_its_value_after_the_invalidation_is_lost(
    private_redis: RedisServer, loss: str
) -> None:
    cache = Cache.from_url(private_redis.url, namespace="evict", timeout=2.0)
    db = Versions()
    held = HeldRead(cache, db)
    try:
        assert await held.read(6) == 1  # the namespace's tokens exist; room 7 is cold
        held.hold = True
        reader = asyncio.create_task(held.read(7))
        await held.loaded.wait()  # the reader has read version 1 and is computing

        db.bump(7)
        before = snapshot(private_redis)
        await held.read.invalidate(7)
        lost = written_between(before, snapshot(private_redis))
        assert lost, "the invalidation wrote nothing"
        if loss == "deleted":
            private_redis.command("UNLINK", *lost)
        else:
            evict(private_redis, lost, loss)

        held.hold = False
        held.release.set()
        assert await reader == 1  # it started before the write: its own answer may be old
        answers = [await held.read(7) for _ in range(5)]
        assert answers == [2] * 5, f"stale after the invalidation was {loss}: {answers}"
        other = Cache.from_url(private_redis.url, namespace="evict", timeout=2.0)
        try:
            assert await HeldRead(other, db).read(7) == 2  # another process agrees
        finally:
            await other.aclose()
    finally:
        await cache.aclose()


def test_memory_lru_from_16_threads_serves_nothing_stale() -> None:
    """``max_entries=50`` and 200 rooms: entries and tokens are evicted all the time."""
    cache = Cache.from_url("memory://?max_entries=50", namespace="lru")
    version: dict[int, int] = {}
    committed: dict[int, int] = {}
    lock = threading.Lock()

    @cache.cached(ttl=300, key_prefix="room")
    def read(room: int) -> int:
        return version.get(room, 0)

    stale: list[tuple[int, int, int]] = []
    answered = 0

    def work(seed: int) -> None:
        nonlocal answered
        rng = random.Random(seed)
        for _ in range(400):
            room = rng.randrange(200)
            if rng.random() < 0.3:
                with lock:
                    version[room] = version.get(room, 0) + 1
                    written = version[room]
                read.invalidate(room)
                with lock:
                    committed[room] = max(committed.get(room, 0), written)
            else:
                floor = committed.get(room, 0)  # invalidated before this read started
                got = read(room)
                with lock:
                    answered += 1
                    if got < floor:
                        stale.append((room, got, floor))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache.close()
    assert answered > 0
    assert stale == [], f"{len(stale)} of {answered} reads stale, e.g. {stale[:5]}"


async def test_cluster_reader_mid_load_never_serves_its_value_after_the_token_is_deleted(
    redis_cluster: RedisCluster, redis_cluster_url: str, unique_namespace: str
) -> None:
    """On a cluster, what the invalidation wrote is deleted by hand on every primary."""
    cache = Cache.from_url(redis_cluster_url, namespace=unique_namespace, timeout=2.0)
    db = Versions()
    held = HeldRead(cache, db)
    try:
        assert await held.read(6) == 1
        held.hold = True
        reader = asyncio.create_task(held.read(7))
        await held.loaded.wait()
        db.bump(7)
        await held.read.invalidate(7)
        # Whatever the invalidation wrote at the entry (its token's copies, or a tombstone):
        # every key of the namespace but the prefix tokens, on every primary.
        deleted = 0
        for host, port in redis_cluster.primaries():
            with redis.Redis(host=host, port=port) as node:
                for key in node.scan_iter(match=f"*{unique_namespace}:*"):
                    if b":__gen__" not in key:
                        deleted += int(node.delete(key))
        assert deleted > 0, "nothing found to delete"
        held.hold = False
        held.release.set()
        assert await reader == 1
        assert [await held.read(7) for _ in range(5)] == [2] * 5
    finally:
        await cache.aclose()
