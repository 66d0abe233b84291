"""``redis://`` and ``rediss://`` on redis-py (asyncio and sync clients, hiredis parser).

Every call is bounded by the socket timeout; the pool is bounded and *waits* (up to
``pool_timeout``) for a free connection instead of failing; redis-py's own retries are off,
because retrying is the breaker's decision, and a retry with backoff multiplies an outage's
latency. Errors leave this module only as ``BackendError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
import redis.exceptions
from redis.backoff import NoBackoff

from freshcache.backends.base import BackendError
from freshcache.backends.errors import REDIS_ERRORS, classify
from freshcache.backends.slots import ConnectionSlots

# A store after a miss succeeds only if the entry is still what the reader saw (its lease:
# "" for no entry, else "=" and the header of that entry) and every token still exists; it
# also keeps each token alive at least as long as the entries that reference it.
STORE_IF_UNCHANGED = """
local current = redis.call('GET', KEYS[1])
local lease = ARGV[3]
if lease == '' then
  if current then return 0 end
else
  local seen = string.sub(lease, 2)
  if (not current) or string.sub(current, 1, #seen) ~= seen then return 0 end
end
local token_ttl = tonumber(ARGV[4])
for i = 2, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -2 then return 0 end
  -- Extend only below half the target: tokens are created with a day to live, so an
  -- extension on every store would be a write per token per miss for nothing.
  if ttl >= 0 and ttl < token_ttl / 2 then redis.call('PEXPIRE', KEYS[i], token_ttl) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

SCAN_COUNT = 1000
UNLINK_BATCH = 500


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except REDIS_ERRORS as exc:
        raise classify(exc) from exc


async def _ask(client: redis.asyncio.Redis, *command: Any) -> Any:
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]


def _tell(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def pool_options(
    timeout: float, max_connections: int, pool_timeout: float, connect_timeout: float | None = None
) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": pool_timeout,
        "socket_timeout": timeout,
        # Opening a connection is rarer and slower than a command (a cold burst opens many at
        # once): by default it gets at least half a second, commands keep the tight timeout.
        "socket_connect_timeout": connect_timeout if connect_timeout else max(timeout, 0.5),
        "retry": None,
        "retry_on_error": [],
        "health_check_interval": 0,
    }


class _Slots(ConnectionSlots):
    """``ConnectionSlots`` that also turns redis-py's errors into ``BackendError`` on the way
    out, so every ``async with self._slots:`` block leaves this module only with those."""

    __slots__ = ()

    async def __aexit__(self, *exc_info: object) -> None:
        await super().__aexit__(*exc_info)
        exc = exc_info[1]
        if isinstance(exc, REDIS_ERRORS):
            raise classify(exc) from exc


class _ReadLane:
    """Connections for the hit path's one MGET, kept outside redis-py's pool.

    redis-py 8's asyncio pool takes a lock, records observability counters and probes the
    socket (``can_read``) on every checkout and release; on the hit path that is most of the
    client-side cost. These are redis-py connections (same options, same hiredis parser, same
    socket timeout), pooled as a plain LIFO list: in one event loop a ``pop`` and an ``append``
    cannot interleave. A connection whose command failed in any way (timeout, cancellation,
    error) is closed, never reused, so an idle one never holds a stray reply. The lane is
    bounded by the same ``_Slots`` as everything else.
    """

    __slots__ = ("_idle", "_pool")

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[Any] = []

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        idle = self._idle
        if idle:
            connection = idle.pop()
        else:
            connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            await connection.connect()
        try:
            await connection.send_packed_command(connection.pack_command("MGET", *keys), False)
            reply: list[bytes | None] = await connection.read_response()
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            raise
        idle.append(connection)
        return reply

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.disconnect()


class AsyncRedisBackend:
    """The asyncio backend. A client belongs to one event loop; a new loop gets a new client."""

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
        del self._options["timeout"]  # the pool-wait bound is _Slots' job here
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: redis.asyncio.Redis | None = None
        self._slots = _Slots(max_connections, pool_timeout)
        self._lane: _ReadLane | None = None
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
        self._slots = _Slots(self._max_connections, self._pool_timeout)
        self._lane = _ReadLane(pool)
        self._store = client.register_script(STORE_IF_UNCHANGED)
        self._release = client.register_script(RELEASE_LOCK)
        return client

    @property
    def client(self) -> redis.asyncio.Redis:
        """The client of the running loop (for tools and tests that need raw commands)."""
        return self._connect()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self._loop is not asyncio.get_running_loop():
            self._connect()
        lane = self._lane
        assert lane is not None
        async with self._slots:
            return await lane.mget(keys)

    async def create_tokens(
        self, route: str, keys: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        client = self._connect()
        async with self._slots, client.pipeline(transaction=False) as pipe:
            for key, token in zip(keys, fresh, strict=True):
                pipe.execute_command("SET", key, token, "NX", "GET", "PX", ttl_ms, get=True)
            previous = await pipe.execute()
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    async def store_if_unchanged(
        self,
        key: str,
        value: bytes,
        ttl_ms: int,
        lease: bytes,
        token_keys: Sequence[str],
        token_ttl_ms: int,
    ) -> bool:
        self._connect()
        async with self._slots:
            stored = await self._store(
                keys=[key, *token_keys], args=[value, ttl_ms, lease, token_ttl_ms]
            )
        return bool(stored)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        client = self._connect()
        async with self._slots:
            await _ask(client, "SET", key, value, "PX", ttl_ms)

    async def bump(self, key: str, token: bytes, ttl_ms: int) -> None:
        await self.set(key, token, ttl_ms)

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        client = self._connect()
        async with self._slots:
            return int(await _ask(client, "UNLINK", *keys))

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        client = self._connect()
        deleted = 0
        batch: list[bytes] = []
        keep = keep_prefix.encode()
        async with self._slots:
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
        async with self._slots:
            return bool(await _ask(client, "SET", key, owner, "NX", "PX", ttl_ms))

    async def release_lock(self, key: str, owner: bytes) -> None:
        self._connect()
        async with self._slots:
            await self._release(keys=[key], args=[owner])

    async def ttl_ms(self, key: str) -> int | None:
        client = self._connect()
        async with self._slots:
            ttl = int(await _ask(client, "PTTL", key))
        return None if ttl == -2 else ttl

    async def scan(self, match: str, limit: int) -> list[str]:
        client = self._connect()
        found: list[str] = []
        async with self._slots:
            async for key in client.scan_iter(match=match, count=SCAN_COUNT):
                found.append(key.decode("utf-8", "replace"))
                if len(found) >= limit:
                    break
        return found

    async def ping(self) -> None:
        client = self._connect()
        async with self._slots:
            await _ask(client, "PING")

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.aclose()
        if client is not None:
            async with self._slots:
                await client.aclose()


class _SyncReadLane:
    """``_ReadLane`` for threads: a deque of redis-py connections (``pop``/``append`` are
    atomic), bounded by a semaphore that waits up to ``pool_timeout`` for a free slot."""

    __slots__ = ("_idle", "_pool", "_slots", "_wait")

    def __init__(self, pool: redis.ConnectionPool, size: int, wait: float) -> None:
        self._pool = pool
        self._idle: collections.deque[Any] = collections.deque()
        self._slots = threading.BoundedSemaphore(size)
        self._wait = wait

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not self._slots.acquire(timeout=self._wait):
            raise BackendError(
                "timeout", f"no free connection within {self._wait}s (max_connections reached)"
            )
        try:
            try:
                connection = self._idle.pop()
            except IndexError:
                connection = self._pool.make_connection()
                connection.connect()  # type: ignore[no-untyped-call]
            try:
                connection.send_packed_command(connection.pack_command("MGET", *keys), False)
                reply: list[bytes | None] = connection.read_response()
            except BaseException:
                with contextlib.suppress(Exception):
                    connection.disconnect()
                raise
            self._idle.append(connection)
            return reply
        finally:
            self._slots.release()

    def close(self) -> None:
        while self._idle:
            with contextlib.suppress(Exception):
                self._idle.pop().disconnect()


class SyncRedisBackend:
    """The synchronous backend (thread-safe: redis-py's pool hands each thread a connection)."""

    kind = "redis"

    def __init__(self, url: str, timeout: float, max_connections: int, pool_timeout: float) -> None:
        self.url = url
        pool = redis.BlockingConnectionPool.from_url(
            url, **pool_options(timeout, max_connections, pool_timeout)
        )
        pool.connection_kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
        self.client = redis.Redis(connection_pool=pool)
        self._lane = _SyncReadLane(pool, max_connections, pool_timeout)
        self._store = self.client.register_script(STORE_IF_UNCHANGED)
        self._release = self.client.register_script(RELEASE_LOCK)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            return self._lane.mget(keys)
        except REDIS_ERRORS as exc:
            raise classify(exc) from exc

    def create_tokens(
        self, route: str, keys: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        with _translated(), self.client.pipeline(transaction=False) as pipe:
            for key, token in zip(keys, fresh, strict=True):
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "SET", key, token, "NX", "GET", "PX", ttl_ms, get=True
                )
            previous = pipe.execute()
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    def store_if_unchanged(
        self,
        key: str,
        value: bytes,
        ttl_ms: int,
        lease: bytes,
        token_keys: Sequence[str],
        token_ttl_ms: int,
    ) -> bool:
        with _translated():
            stored = self._store(keys=[key, *token_keys], args=[value, ttl_ms, lease, token_ttl_ms])
        return bool(stored)

    def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        with _translated():
            _tell(self.client, "SET", key, value, "PX", ttl_ms)

    def bump(self, key: str, token: bytes, ttl_ms: int) -> None:
        self.set(key, token, ttl_ms)

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with _translated():
            return int(_tell(self.client, "UNLINK", *keys))

    def delete_matching(self, match: str, keep_prefix: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        keep = keep_prefix.encode()
        with _translated():
            for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                if key.startswith(keep):
                    continue
                batch.append(key)
                if len(batch) >= UNLINK_BATCH:
                    deleted += int(_tell(self.client, "UNLINK", *batch))
                    batch.clear()
            if batch:
                deleted += int(_tell(self.client, "UNLINK", *batch))
        return deleted

    def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        with _translated():
            return bool(_tell(self.client, "SET", key, owner, "NX", "PX", ttl_ms))

    def release_lock(self, key: str, owner: bytes) -> None:
        with _translated():
            self._release(keys=[key], args=[owner])

    def ttl_ms(self, key: str) -> int | None:
        with _translated():
            ttl = int(_tell(self.client, "PTTL", key))
        return None if ttl == -2 else ttl

    def scan(self, match: str, limit: int) -> list[str]:
        found: list[str] = []
        with _translated():
            for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                found.append(key.decode("utf-8", "replace"))
                if len(found) >= limit:
                    break
        return found

    def ping(self) -> None:
        with _translated():
            _tell(self.client, "PING")

    def close(self) -> None:
        self._lane.close()
        self.client.close()
        # A client given its pool does not close it: disconnect, or the sockets leak.
        self.client.connection_pool.disconnect()
