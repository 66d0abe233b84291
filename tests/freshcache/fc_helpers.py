"""Helpers shared by the freshcache behaviour suite (imported as a top-level module: the name is
unique on purpose, since tests/ directories are not packages).

- ``Raw``: direct access to what a backend stores, bypassing freshcache, as an operator (or an
  eviction, or an attacker who can write to Redis) would: read, overwrite, delete, TTLs.
- ``FakeClock``: a clock the memory backend reads; tests move it instead of sleeping.
- ``Calls``: counts a function body's runs.
- ``wait_until``: waits (bounded) for a condition that another task or thread makes true. It
  never waits for a race "to happen": the interleavings are driven with events; this only
  observes that every participant has reached the point the test drives them to.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio

from freshcache import Cache
from freshcache.backends.cluster import ShardLayout, parse_cluster_url
from freshcache.backends.memory import MemoryStore


class Raw:
    """What the backend holds under one namespace, read and written without freshcache."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.namespace = cache.namespace
        self._store: MemoryStore | None = None
        self._client: Any = None
        self._layout: ShardLayout | None = None
        url = cache.url
        if url.startswith("memory://"):
            # The memory backend has no second door: its store is the raw view.
            store = cache.backends.sync_backend
            assert isinstance(store, MemoryStore)
            self._store = store
        elif "+cluster://" in url:
            # Stored as "{fc:XXXX}" + key, in the shard of the entry it is read with; a token
            # has a copy in every shard that reads it (docs/cluster.md).
            settings = parse_cluster_url(url)
            host, port = settings.seeds[0].rsplit(":", 1)
            self._client = redis.asyncio.RedisCluster(host=host, port=int(port))
            self._layout = ShardLayout(settings.shards)
        else:
            self._client = redis.asyncio.Redis.from_url(url)

    @property
    def is_memory(self) -> bool:
        return self._store is not None

    def _stored(self, key: str) -> list[str]:
        """Where ``key`` may be stored: itself, or in a cluster its own shard, then every shard."""
        if self._layout is None:
            return [key]
        return [self._layout.physical(key), *self._layout.copies(key)]

    async def get(self, key: str) -> bytes | None:
        """The value (in a cluster: of the key's own shard, else the first copy there is)."""
        if self._store is not None:
            return self._store.peek(key)
        for name in self._stored(key):
            value: bytes | None = await self._client.get(name)
            if value is not None:
                return value
        return None

    async def set(self, key: str, value: bytes, ttl_ms: int = 60_000) -> None:
        if self._store is not None:
            self._store.set(key, value, ttl_ms)
        else:
            await self._client.set(self._stored(key)[0], value, px=ttl_ms)

    async def delete(self, *keys: str) -> None:
        """Delete keys (in a cluster: every copy, as an eviction or a flush would)."""
        if not keys:
            return
        if self._store is not None:
            self._store.delete(keys)
        else:
            for key in keys:  # one by one: in a cluster they live in different slots
                for name in dict.fromkeys(self._stored(key)):
                    await self._client.delete(name)

    async def pttl(self, key: str) -> int | None:
        """Milliseconds left; None if absent, -1 if it never expires. In a cluster, of the
        longest-lived copy: a long entry extends the copy of the shard it is read from."""
        if self._store is not None:
            return self._store.ttl_ms(key)
        ttls = [int(await self._client.pttl(name)) for name in dict.fromkeys(self._stored(key))]
        present = [ttl for ttl in ttls if ttl != -2]
        if not present:
            return None
        return -1 if -1 in present else max(present)

    async def keys(self, match: str) -> list[str]:
        """Keys of this namespace matching ``match`` (relative to the namespace)."""
        full = f"{self.namespace}:{match}"
        if self._store is not None:
            return sorted(self._store.scan(full, 1_000_000))
        if self._layout is not None:
            found = self._client.scan_iter(match=self._layout.match(full), count=1000)
            return sorted({self._layout.logical(k.decode()) async for k in found})
        return sorted([k.decode() async for k in self._client.scan_iter(match=full, count=1000)])

    async def token_keys(self) -> list[str]:
        """Every generation-token key of the namespace (``{ns}:__gen__`` and below)."""
        return await self.keys("__gen__*")

    async def cleanup(self) -> None:
        """Delete every key of this namespace (never FLUSHDB: the server may be shared)."""
        if self._client is None:
            return
        prefix = self._layout.match("") if self._layout is not None else ""
        keys = [
            k async for k in self._client.scan_iter(match=f"{prefix}{self.namespace}:*", count=1000)
        ]
        keys += [k async for k in self._client.scan_iter(match=prefix + self.namespace, count=10)]
        for key in keys:
            await self._client.delete(key)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Calls:
    """Counts a body's runs (thread-safe) and remembers the arguments."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> int:
        with self._lock:
            self.args.append(args)
            return len(self.args)

    @property
    def count(self) -> int:
        return len(self.args)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.001)


def wait_until_sync(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)
