"""A Redis that came back with older data: restarted from a snapshot taken before the last
invalidations, or a replica promoted after it missed them. The cache checks the server's
identity on (re)connect against the one stored with the namespace, and starts a fresh
generation before serving, in the process that saw the old server and in one that never did.
"""

from __future__ import annotations

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
