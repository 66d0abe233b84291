"""An invalidation made once the server answers again is applied, not only kept.

Reads may wait out the breaker's cool-down (reading around the cache is safe); an invalidation
may not: kept for a later replay, it lets other processes read what it invalidates until the
replay lands. Found by the stale-read checker: after a restart, or a pause of the writer's own
process, writes returned with their invalidations kept while other processes, already
reconnected, served the older value.
"""

from __future__ import annotations

import asyncio

import pytest

from freshcache import Cache
from support.redis_server import RedisServer

from .invalidation_faults import Versions


def _read(cache: Cache, db: Versions):  # type: ignore[no-untyped-def]
    @cache.cached(ttl=300, key_prefix="room")
    async def read(room: int) -> int:
        return db.get(room)

    return read


async def _open_the_breaker(server: RedisServer, cache: Cache, db: Versions) -> None:
    read = _read(cache, db)
    server.pause()  # SIGSTOP: the reads time out
    try:
        assert await read(2) == 1  # answered around the cache
    finally:
        server.resume()
    assert cache.health()["breaker"] == "open"


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_an_invalidation_with_the_breaker_open_reaches_a_server_that_answers(
    private_redis: RedisServer, face: str
) -> None:
    db = Versions()
    # A long cool-down: the breaker is still open when the invalidation is made.
    writer = Cache.from_url(
        private_redis.url, namespace="after", timeout=0.2, breaker_threshold=1,
        breaker_cooldown_min=60.0, breaker_cooldown=60.0,
    )  # fmt: skip
    other = Cache.from_url(private_redis.url, namespace="after", timeout=5.0)
    try:
        other_read = _read(other, db)
        assert await other_read(1) == 1  # cached in the other process
        await _open_the_breaker(private_redis, writer, db)
        db.bump(1)
        if face == "async":
            await writer.invalidate("room:*")
        else:
            await asyncio.to_thread(writer.invalidate_sync, "room:*")
        assert writer.health()["pending_invalidations"] == 0  # applied, not only kept
        assert await other_read(1) == 2  # the other process sees it at once
    finally:
        await writer.aclose()
        await other.aclose()
