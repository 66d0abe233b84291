"""Helpers of the invalidation-fault tests: a source of truth with versions, a cached read whose
body can be held mid-load by an event, and what Redis holds (for evicting or deleting exactly
what an invalidation wrote). Test-only; talks to a private redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis

from freshcache import Cache
from support.faults import FILLER_PREFIX
from support.redis_server import RedisServer
from support.resp import RedisReplyError


class Versions:
    """The database: a version per room, bumped by writes."""

    def __init__(self) -> None:
        self.version: dict[int, int] = {}

    def get(self, room: int) -> int:
        return self.version.get(room, 1)

    def bump(self, room: int) -> int:
        self.version[room] = self.get(room) + 1
        return self.version[room]


class HeldRead:
    """``read(room)`` cached under ``room``; while ``hold`` is set, the body reads the database,
    then waits on ``release`` before returning what it read (a reader mid-load)."""

    def __init__(self, cache: Cache, db: Versions) -> None:
        self.db = db
        self.hold = False
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()

        @cache.cached(ttl=300, key_prefix="room")
        async def read(room: int) -> int:
            seen = db.get(room)
            if self.hold:
                self.loaded.set()
                await self.release.wait()
            return seen

        self.read = read


def snapshot(server: RedisServer) -> dict[str, bytes | None]:
    """Every key of a private server and its value (test servers hold a few hundred keys)."""
    with redis.Redis.from_url(server.url) as client:
        keys = [k.decode() for k in client.keys("*")]
        return {k: client.get(k) for k in keys if not k.startswith(FILLER_PREFIX)}


def written_between(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    """The keys an operation created or changed."""
    return [k for k, v in after.items() if before.get(k) != v]


def evict(server: RedisServer, keys: list[str], policy: str, deadline: float = 60.0) -> int:
    """Make Redis evict ``keys`` itself: a small ``maxmemory`` with ``policy``, and filler
    writes until none of them is left (the fillers carry a TTL, so volatile-lru may take them
    as well as ours; under volatile-lru nothing but ``keys`` keeps a TTL). Returns how many
    fillers it took; memory is unlimited again after."""
    volatile = policy.startswith("volatile")
    if volatile:  # only what the invalidation wrote may go: nothing else keeps a TTL
        with redis.Redis.from_url(server.url) as client:
            for key in client.keys("*"):
                if key.decode() not in keys:
                    client.persist(key)
    used = int(server.info("memory")["used_memory"])
    server.command("CONFIG", "SET", "maxmemory-policy", policy)
    server.command("CONFIG", "SET", "maxmemory", str(used + 256 * 1024))
    value = "f" * 4096
    written = 0
    stop = time.monotonic() + deadline
    try:
        while any(server.command("EXISTS", k) for k in keys):
            if time.monotonic() > stop:
                raise AssertionError(f"Redis did not evict {keys} under {policy}")
            filler = f"{FILLER_PREFIX}:{written}"
            try:
                if volatile:
                    server.command("SET", filler, value)
                else:
                    server.command("SET", filler, value, "EX", "3600")
            except RedisReplyError as exc:
                # Under volatile-lru, once the last of ``keys`` is evicted nothing else may go,
                # and the filler that needed the room is refused: the eviction is done.
                if "OOM" not in str(exc) or any(server.command("EXISTS", k) for k in keys):
                    raise
                break
            written += 1
    finally:
        server.command("CONFIG", "SET", "maxmemory", "0")
    return written


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], limit: float = 30.0
) -> None:
    """Wait (bounded, generously) for a condition that a background task makes true."""
    stop = time.monotonic() + limit
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > stop:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)
