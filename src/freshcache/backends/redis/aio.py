"""The asyncio face of the standalone Redis backend (``AsyncBackend``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.backoff import NoBackoff

from freshcache.backends.base import EntryKeys
from freshcache.backends.budget import ConnectionBudget
from freshcache.backends.redis.errors import GATE
from freshcache.backends.redis.identity import identity_of
from freshcache.backends.redis.lane import ReadLane
from freshcache.backends.redis.options import pool_options
from freshcache.backends.redis.pools import AsyncPool
from freshcache.backends.redis.scripts import (
    RELEASE_LOCK,
    SCAN_COUNT,
    STORE_IF_UNCHANGED,
    UNLINK_BATCH,
)


async def _ask(client: redis.asyncio.Redis, *command: Any) -> Any:
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]


class LoopClient:
    """The client of one event loop: its bounded pool, the hit lane on it, the scripts."""

    __slots__ = ("client", "lane", "pool", "release", "store")

    def __init__(self, url: str, budget: ConnectionBudget, options: dict[str, Any]) -> None:
        self.pool = AsyncPool.bounded(url, budget, **options)
        self.pool.connection_kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
        self.client = redis.asyncio.Redis.from_pool(self.pool)
        self.lane = ReadLane(self.pool)
        self.store = self.client.register_script(STORE_IF_UNCHANGED)
        self.release = self.client.register_script(RELEASE_LOCK)


class AsyncRedisBackend:
    """A client belongs to one event loop: each loop that uses the backend gets its own, kept
    for as long as that loop lives (never traded back and forth), and all of them draw their
    connections from one ``ConnectionBudget`` (shared with the sync face when the cache gives
    one). Every command runs inside ``GATE``, the translation of errors."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        timeout: float,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.url = url
        self._options = pool_options(timeout, max_connections, pool_timeout, connect_timeout)
        del self._options["timeout"]  # the wait for a free connection is the budget's
        self.budget = budget or ConnectionBudget(max_connections, pool_timeout)
        self._loops: dict[asyncio.AbstractEventLoop, LoopClient] = {}
        self._lock = threading.Lock()

    def _here(self) -> LoopClient:
        here = self._loops.get(asyncio.get_running_loop())
        return here if here is not None else self._open()

    def _open(self) -> LoopClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [old for old in self._loops if old.is_closed()]:
                # A loop that is gone cannot close its sockets: shut them down from here.
                self._loops.pop(old).pool.abandon()
            here = self._loops.get(loop)
            if here is None:
                here = self._loops[loop] = LoopClient(self.url, self.budget, self._options)
        return here

    @property
    def client(self) -> redis.asyncio.Redis:
        """The client of the running loop (for tools and tests that need raw commands)."""
        return self._here().client

    @property
    def loops(self) -> int:
        """How many event loops have a client now."""
        return len(self._loops)

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        here = self._loops.get(asyncio.get_running_loop())
        if here is None:
            here = self._open()
        async with GATE:
            return await here.lane.mget(keys.fetch)

    async def get_many_batch(self, keys: Sequence[str]) -> list[bytes | None]:
        """Several entries' keys in one MGET (the shared rounds' batches)."""
        here = self._loops.get(asyncio.get_running_loop())
        if here is None:
            here = self._open()
        async with GATE:
            return await here.lane.mget(keys)

    async def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        client = self._here().client
        async with GATE, client.pipeline(transaction=False) as pipe:
            for key, token in zip(missing, fresh, strict=True):
                pipe.execute_command("SET", key, token, "NX", "GET", "PX", ttl_ms, get=True)
            previous = await pipe.execute()
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    async def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        store = self._here().store
        async with GATE:
            stored = await store(keys=keys.fetch, args=[value, ttl_ms, lease, token_ttl_ms])
        return bool(stored)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        client = self._here().client
        async with GATE:
            await _ask(client, "SET", key, value, "PX", ttl_ms)

    async def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        await self.set(token_key, token, ttl_ms)

    async def unlink_token(self, token_key: str) -> None:
        await self.delete((token_key,))

    async def server_identity(self) -> bytes | None:
        client = self._here().client
        async with GATE, client.pipeline(transaction=False) as pipe:
            pipe.execute_command("INFO", "server")
            pipe.execute_command("INFO", "replication")
            server, replication = await pipe.execute()
        return identity_of(server, replication)

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        client = self._here().client
        async with GATE:
            return int(await _ask(client, "UNLINK", *keys))

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        client = self._here().client
        deleted = 0
        batch: list[bytes] = []
        keep = keep_prefix.encode()
        async with GATE:
            async for key in client.scan_iter(match=match, count=SCAN_COUNT):
                if key.startswith(keep):
                    continue
                batch.append(key)
                if len(batch) >= UNLINK_BATCH:
                    deleted += int(await _ask(client, "UNLINK", *batch))
                    batch.clear()
            if batch:
                deleted += int(await _ask(client, "UNLINK", *batch))
        return deleted

    async def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        client = self._here().client
        async with GATE:
            return bool(await _ask(client, "SET", key, owner, "NX", "PX", ttl_ms))

    async def release_lock(self, key: str, owner: bytes) -> None:
        release = self._here().release
        async with GATE:
            await release(keys=[key], args=[owner])

    async def ttl_ms(self, key: str) -> int | None:
        client = self._here().client
        async with GATE:
            ttl = int(await _ask(client, "PTTL", key))
        return None if ttl == -2 else ttl

    async def scan(self, match: str, limit: int) -> list[str]:
        client = self._here().client
        found: list[str] = []
        async with GATE:
            async for key in client.scan_iter(match=match, count=SCAN_COUNT):
                found.append(key.decode("utf-8", "replace"))
                if len(found) >= limit:
                    break
        return found

    async def ping(self) -> None:
        client = self._here().client
        async with GATE:
            await _ask(client, "PING")

    async def aclose(self) -> None:
        """Close the clients of every loop: this loop's properly, the others' at the socket
        (they cannot be awaited from here; a closed loop cannot run anything)."""
        running = asyncio.get_running_loop()
        with self._lock:
            loops, self._loops = self._loops, {}
        for loop, here in loops.items():
            if loop is running:
                async with GATE:
                    await here.client.aclose()
            else:
                here.pool.abandon()

    def close_from_sync(self) -> None:
        """``aclose`` for a caller with no running loop (``Cache.close``)."""
        with self._lock:
            loops, self._loops = self._loops, {}
        for here in loops.values():
            here.pool.abandon()
