"""Invalidations that are never lost: when the task running one is cancelled while Redis is
slow, when one pattern of a write cannot be built, and when Redis serves reads but refuses
writes. "Another process" is a second ``Cache`` on the same server and namespace: it shares
nothing with the first but Redis, as a process would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from freshcache import Cache
from support.faults import fill_until_oom, limit_memory, pause_writes
from support.proxy import FaultProxy
from support.redis_server import RedisServer

from .invalidation_faults import Versions, eventually

NAMESPACE = "survive"


def reader(cache: Cache, db: Versions) -> Callable[[int], object]:
    @cache.cached(ttl=300, key_prefix="room")
    async def read(room: int) -> int:
        return db.get(room)

    return read


@contextlib.asynccontextmanager
async def two_processes(url: str, **options: float) -> AsyncIterator[tuple[Cache, Cache]]:
    writer = Cache.from_url(url, namespace=NAMESPACE, **options)
    other = Cache.from_url(url, namespace=NAMESPACE, **options)
    try:
        yield writer, other
    finally:
        await writer.aclose(flush_timeout=0.5)
        await other.aclose(flush_timeout=0.5)


async def _blocked(server: RedisServer) -> bool:
    return int(server.info("clients")["blocked_clients"]) > 0


@pytest.mark.parametrize("how", ["cache.invalidate", "@invalidate_cache", "deferred"])
async def test_cancelled_mid_invalidation_is_kept_and_applied(
    private_redis: RedisServer, how: str
) -> None:
    db = Versions()
    async with two_processes(private_redis.url, timeout=10.0) as (writer, other):
        read, read_elsewhere = reader(writer, db), reader(other, db)
        assert await read(1) == 1
        assert await read_elsewhere(1) == 1  # cached in Redis for both

        @writer.invalidate_cache("room:*")
        async def write() -> None:
            db.bump(1)

        async def run() -> None:
            if how == "cache.invalidate":
                db.bump(1)
                await writer.invalidate("room:*")
            elif how == "@invalidate_cache":
                await write()
            else:
                async with writer.deferred():
                    db.bump(1)
                    await writer.invalidate("room:*")

        with pause_writes(private_redis):
            task = asyncio.create_task(run())
            await eventually(lambda: _blocked(private_redis))  # its write waits in Redis
            task.cancel()  # the client went away
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert writer.health()["pending_invalidations"] == 1, "the invalidation was lost"
            assert writer.health()["status"] == "degraded"
            assert await read(1) == 2  # this process bypasses while it is kept
        # Nobody calls the writer again: the background replay applies it.
        await eventually(lambda: not writer.pending)
        assert await read_elsewhere(1) == 2
        assert await read(1) == 2


async def test_a_pattern_that_cannot_be_built_keeps_the_others_and_a_broader_one(
    redis_url: str, unique_namespace: str
) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0)
    versions = {"hall": 1, "room": 1}

    @cache.cached(ttl=300, key_prefix="hall")
    async def hall() -> int:
        return versions["hall"]

    @cache.cached(ttl=300, key_prefix="room:{name}")
    async def room(name: str) -> int:
        return versions["room"]

    class Exploding:
        @property
        def name(self) -> str:
            raise RuntimeError("no name today")

    @cache.invalidate_cache("hall:*", "room:{result.name}:*")
    async def write() -> Exploding:
        versions["hall"] += 1
        versions["room"] += 1
        return Exploding()

    try:
        assert (await hall(), await room("a"), await room("\ud800")) == (1, 1, 1)
        await write()  # never raises after the write
        assert (await hall(), await room("a"), await room("\ud800")) == (2, 2, 2)
        assert cache.stats()["room:{name}"].errors_by_kind["pattern"] == 1
    finally:
        await cache.aclose()


async def test_lone_surrogate_in_a_template_value_invalidates(
    redis_url: str, unique_namespace: str
) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0)
    versions = {"room": 1, "hall": 1}

    @cache.cached(ttl=300, key_prefix="room:{name}")
    async def room(name: str) -> int:
        return versions["room"]

    @cache.cached(ttl=300, key_prefix="hall")
    async def hall() -> int:
        return versions["hall"]

    @cache.invalidate_cache("room:{name}:*", "hall:*")
    async def rename(name: str) -> None:
        versions["room"] += 1
        versions["hall"] += 1

    try:
        assert (await room("\ud800"), await hall()) == (1, 1)
        await rename("\ud800")
        assert (await room("\ud800"), await hall()) == (2, 2)
    finally:
        await cache.aclose()


async def test_refused_writes_never_let_another_process_read_stale(
    private_redis: RedisServer,
) -> None:
    """OOM under noeviction: the bump is refused, UNLINK of the token is not."""
    db = Versions()
    async with two_processes(private_redis.url, timeout=2.0) as (writer, other):
        read, read_elsewhere = reader(writer, db), reader(other, db)
        assert [await read(r) for r in range(3)] == [1, 1, 1]
        assert [await read_elsewhere(r) for r in range(3)] == [1, 1, 1]
        limit_memory(private_redis, 1024 * 1024, "noeviction")
        fill_until_oom(private_redis)

        for r in range(3):
            db.bump(r)
        await writer.invalidate("room:*")
        answers = [await read_elsewhere(r % 3) for r in range(60)]
        assert answers == [2] * 60
        assert [await read(r) for r in range(3)] == [2, 2, 2]
        assert writer.health()["status"] == "degraded"  # writes refused
        assert writer.health()["writes_refused"] is True

        private_redis.command("CONFIG", "SET", "maxmemory", "0")
        assert [await read(r) for r in range(3)] == [2, 2, 2]
        await writer.invalidate("hall:*")  # a write accepted again
        assert writer.health()["writes_refused"] is False


async def test_kept_invalidation_is_replayed_in_the_background_while_nobody_calls(
    private_redis: RedisServer,
) -> None:
    """CLIENT PAUSE WRITE: the bump times out and nothing else can be written either."""
    db = Versions()
    async with two_processes(private_redis.url, timeout=0.2) as (writer, other):
        read_elsewhere = reader(other, db)
        reader(writer, db)
        assert await read_elsewhere(1) == 1
        with pause_writes(private_redis):
            db.bump(1)
            await writer.invalidate("room:*")
            assert writer.health()["pending_invalidations"] == 1
            assert writer.health()["status"] == "degraded"
        await eventually(lambda: not writer.pending)  # no call to the writer in between
        assert await read_elsewhere(1) == 2


async def test_close_flushes_kept_invalidations_or_reports_them(
    private_redis: RedisServer, fault_proxy: Callable[[str, int], FaultProxy]
) -> None:
    proxy = fault_proxy(*private_redis.address)
    db = Versions()
    other = Cache.from_url(private_redis.url, namespace=NAMESPACE, timeout=2.0)
    read_elsewhere = reader(other, db)
    try:
        assert await read_elsewhere(1) == 1

        unlucky = Cache.from_url(proxy.url, namespace=NAMESPACE, timeout=0.1)
        proxy.set_mode("refuse")
        db.bump(1)
        await unlucky.invalidate("room:*")
        assert await unlucky.aclose(flush_timeout=0.3) == ["room:*"]  # reported, not lost

        writer = Cache.from_url(proxy.url, namespace=NAMESPACE, timeout=0.1)
        await writer.invalidate("room:*")  # kept: the proxy still refuses
        assert writer.pending
        writer.engine.replayer.stop(1.0)  # so that only close() can apply it
        proxy.set_mode("pass")
        assert await writer.aclose(flush_timeout=10.0) == []
        assert await read_elsewhere(1) == 2
    finally:
        await other.aclose()
