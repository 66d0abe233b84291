"""A Redis that came back with older data: restarted from a snapshot taken before the last
invalidations, or a replica promoted after it missed them. The cache checks the server's
identity on (re)connect against the one stored with the namespace, and starts a fresh
generation before serving, in the process that saw the old server and in one that never did.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from freshcache import Cache
from support.redis_server import RedisServer
from support.replication import start_replicated_redis

from .invalidation_faults import Versions

NAMESPACE = "older"
ROOMS = range(3)


def reader(cache: Cache, db: Versions):  # type: ignore[no-untyped-def]
    @cache.cached(ttl=300, key_prefix="room")
    async def read(room: int) -> int:
        return db.get(room)

    return read


async def _read_all(cache: Cache, db: Versions) -> list[int]:
    read = reader(cache, db)
    return [await read(r) for r in ROOMS]


async def test_restart_from_an_older_snapshot_serves_nothing_stale(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    db = Versions()
    writer = Cache.from_url(private_redis.url, namespace=NAMESPACE, timeout=2.0)
    read = reader(writer, db)
    try:
        assert [await read(r) for r in ROOMS] == [1, 1, 1]
        dump = private_redis.save_snapshot(tmp_path / "dump.rdb")  # entries at version 1
        for r in ROOMS:
            db.bump(r)
        await writer.invalidate("room:*")
        assert [await read(r) for r in ROOMS] == [2, 2, 2]

        private_redis.restart_from_snapshot(dump)  # the old tokens and entries are back

        newcomer = Cache.from_url(private_redis.url, namespace=NAMESPACE, timeout=2.0)
        try:
            assert await _read_all(newcomer, db) == [2, 2, 2]  # never saw the old server
        finally:
            await newcomer.aclose()
        answers = [await read(r) for r in ROOMS for _ in range(3)]
        assert answers == [2] * 9  # the first may run uncached (the reconnect), none stale
        assert writer.health()["server_verified"] is True
    finally:
        await writer.aclose()


async def test_crash_with_periodic_rdb_serves_nothing_stale(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """kill -9 after the last periodic save: the server comes back from that save."""
    db = Versions()
    writer = Cache.from_url(private_redis.url, namespace=NAMESPACE, timeout=2.0)
    read = reader(writer, db)
    try:
        assert [await read(r) for r in ROOMS] == [1, 1, 1]
        dump = private_redis.save_snapshot(tmp_path / "periodic.rdb")
        for r in ROOMS:
            db.bump(r)
        await writer.invalidate("room:*")
        private_redis.kill()
        private_redis.restart_from_snapshot(dump)
        answers = [await read(r) for r in ROOMS for _ in range(3)]
        assert answers == [2] * 9
    finally:
        await writer.aclose()


async def test_lagging_replica_promoted_at_the_same_address_serves_nothing_stale() -> None:
    pair = start_replicated_redis()
    db = Versions()
    writer = Cache.from_url(pair.url, namespace=NAMESPACE, timeout=2.0)
    read = reader(writer, db)
    try:
        assert [await read(r) for r in ROOMS] == [1, 1, 1]
        pair.wait_for_sync()  # the replica holds the entries and tokens
        pair.partition()  # from here on the replica misses every write
        for r in ROOMS:
            db.bump(r)
        await writer.invalidate("room:*")
        assert [await read(r) for r in ROOMS] == [2, 2, 2]
        pair.failover()  # promoted, reached through the same address

        newcomer = Cache.from_url(pair.url, namespace=NAMESPACE, timeout=2.0)
        try:
            assert await _read_all(newcomer, db) == [2, 2, 2]
        finally:
            await newcomer.aclose()
        answers = [await read(r) for r in ROOMS for _ in range(3)]
        assert answers == [2] * 9
    finally:
        await writer.aclose()
        pair.stop()


async def test_sync_and_async_faces_checking_at_once_start_one_generation(
    private_redis: RedisServer,
) -> None:
    """A cache's first sync and first async call check the server at the same moment (held
    together by CLIENT PAUSE): one check starts the namespace's generation, the other waits for
    it. Two checks would both find no identity stored and both replace the root token, the
    later one invalidating what the first face stored meanwhile, so its warm round ran
    uncached (seen under connection contention as 0 sync hits in 100). The race is tried on
    20 fresh caches: the old code lost it in about one of five."""
    generations: list[int] = []
    for attempt in range(20):
        cache = Cache.from_url(private_redis.url, namespace=f"faces{attempt}", timeout=30.0)

        @cache.cached(ttl=300, key_prefix="async")
        async def double(n: int) -> int:
            return n * 2

        @cache.cached(ttl=300, key_prefix="sync")
        def triple(n: int) -> int:
            return n * 3

        try:
            private_redis.command("CLIENT", "PAUSE", "100", "ALL")
            answers: list[int] = []
            thread = threading.Thread(target=lambda: answers.append(triple(1)))  # noqa: B023
            thread.start()
            assert await double(1) == 2
            await asyncio.to_thread(thread.join)
            assert answers == [3]
            for _ in range(3):
                assert await double(1) == 2
                assert triple(1) == 3
            generations.append(cache.health()["new_generations"])
            stats = cache.stats()
            assert (stats["async"].hits, stats["sync"].hits) == (3, 3), attempt
        finally:
            await cache.aclose()
    assert generations == [1] * 20


async def test_processes_meeting_a_new_server_at_once_start_one_generation(
    private_redis: RedisServer,
) -> None:
    """Caches of one namespace (one per process in production; separate ``Cache`` objects
    here, which share nothing but the server) check a server nobody has written on yet at the
    same moment: CLIENT PAUSE WRITE lets each read that no identity is stored and holds their
    writes together. One of them starts the generation; the others wait for it. Each starting
    one replaced the root token after the others had, invalidating what they stored meanwhile:
    seen in CI as a lock=True body run 5 times by 4 processes instead of once."""
    for attempt in range(5):
        caches = [
            Cache.from_url(private_redis.url, namespace=f"procs{attempt}", timeout=30.0)
            for _ in range(3)
        ]
        runs = 0

        def stats_of(cache: Cache):  # type: ignore[no-untyped-def]
            @cache.cached(ttl=300, key_prefix="stats")
            async def stats() -> int:
                nonlocal runs
                runs += 1
                return 7

            return stats

        functions = [stats_of(cache) for cache in caches]
        try:
            private_redis.command("CLIENT", "PAUSE", "200", "WRITE")
            assert await asyncio.gather(*(read() for read in functions)) == [7, 7, 7]
            hits = [cache.stats()["stats"].hits for cache in caches]
            assert [await read() for read in functions] == [7, 7, 7]
            generations = [cache.health()["new_generations"] for cache in caches]
            assert sum(generations) == 1, (attempt, generations)
            # What the first round stored is still valid for every cache: the second is hits.
            hits_now = [cache.stats()["stats"].hits for cache in caches]
            assert [now - then for now, then in zip(hits_now, hits, strict=True)] == [1, 1, 1]
        finally:
            for cache in caches:
                await cache.aclose()
