"""The asyncio face of the standalone Redis backend (``AsyncBackend``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.backoff import NoBackoff

from freshcache.backends.base import EntryKeys
from freshcache.backends.redis.errors import Gate
from freshcache.backends.redis.identity import identity_of
from freshcache.backends.redis.lane import ReadLane
from freshcache.backends.redis.options import pool_options
from freshcache.backends.redis.scripts import (
    RELEASE_LOCK,
    SCAN_COUNT,
    STORE_IF_UNCHANGED,
    UNLINK_BATCH,
)


async def _ask(client: redis.asyncio.Redis, *command: Any) -> Any:
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]


class AsyncRedisBackend:
    """A client belongs to one event loop; a new loop gets a new client. Every command runs
    inside ``self._gate``: the bound on connections, and the translation of errors."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        timeout: float,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float | None = None,
    ) -> None:
        self.url = url
        self._options = pool_options(timeout, max_connections, pool_timeout, connect_timeout)
        del self._options["timeout"]  # the pool-wait bound is the Gate's job here
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: redis.asyncio.Redis | None = None
        self._gate = Gate(max_connections, pool_timeout)
        self._lane: ReadLane | None = None
        self._store: Any = None
        self._release: Any = None

    def _connect(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        pool = redis.asyncio.ConnectionPool.from_url(self.url, **self._options)
        pool.connection_kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
        client = redis.asyncio.Redis.from_pool(pool)
        self._client, self._loop = client, loop
        self._gate = Gate(self._max_connections, self._pool_timeout)
        self._lane = ReadLane(pool)
        self._store = client.register_script(STORE_IF_UNCHANGED)
        self._release = client.register_script(RELEASE_LOCK)
        return client

    @property
    def client(self) -> redis.asyncio.Redis:
        """The client of the running loop (for tools and tests that need raw commands)."""
        return self._connect()

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        if self._loop is not asyncio.get_running_loop():
            self._connect()
        lane = self._lane
        assert lane is not None
        async with self._gate:
            return await lane.mget(keys.fetch)

    async def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        client = self._connect()
        async with self._gate, client.pipeline(transaction=False) as pipe:
            for key, token in zip(missing, fresh, strict=True):
                pipe.execute_command("SET", key, token, "NX", "GET", "PX", ttl_ms, get=True)
            previous = await pipe.execute()
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    async def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        self._connect()
        async with self._gate:
            stored = await self._store(keys=keys.fetch, args=[value, ttl_ms, lease, token_ttl_ms])
        return bool(stored)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        client = self._connect()
        async with self._gate:
            await _ask(client, "SET", key, value, "PX", ttl_ms)

    async def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        await self.set(token_key, token, ttl_ms)

    async def unlink_token(self, token_key: str) -> None:
        await self.delete((token_key,))

    async def server_identity(self) -> bytes | None:
        client = self._connect()
        async with self._gate, client.pipeline(transaction=False) as pipe:
            pipe.execute_command("INFO", "server")
            pipe.execute_command("INFO", "replication")
            server, replication = await pipe.execute()
        return identity_of(server, replication)

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        client = self._connect()
        async with self._gate:
            return int(await _ask(client, "UNLINK", *keys))

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        client = self._connect()
        deleted = 0
        batch: list[bytes] = []
        keep = keep_prefix.encode()
        async with self._gate:
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
        client = self._connect()
        async with self._gate:
            return bool(await _ask(client, "SET", key, owner, "NX", "PX", ttl_ms))

    async def release_lock(self, key: str, owner: bytes) -> None:
        self._connect()
        async with self._gate:
            await self._release(keys=[key], args=[owner])

    async def ttl_ms(self, key: str) -> int | None:
        client = self._connect()
        async with self._gate:
            ttl = int(await _ask(client, "PTTL", key))
        return None if ttl == -2 else ttl

    async def scan(self, match: str, limit: int) -> list[str]:
        client = self._connect()
        found: list[str] = []
        async with self._gate:
            async for key in client.scan_iter(match=match, count=SCAN_COUNT):
                found.append(key.decode("utf-8", "replace"))
                if len(found) >= limit:
                    break
        return found

    async def ping(self) -> None:
        client = self._connect()
        async with self._gate:
            await _ask(client, "PING")

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.aclose()
        if client is not None:
            async with self._gate:
                await client.aclose()
