"""The synchronous face of the standalone Redis backend (``SyncBackend``; thread-safe: the
bounded pool hands each thread a connection)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff

from freshcache.backends.base import EntryKeys
from freshcache.backends.budget import ConnectionBudget
from freshcache.backends.redis.errors import TRANSLATED
from freshcache.backends.redis.identity import identity_of
from freshcache.backends.redis.lane import SyncReadLane
from freshcache.backends.redis.options import pool_options
from freshcache.backends.redis.pools import SyncPool
from freshcache.backends.redis.scripts import (
    RELEASE_LOCK,
    SCAN_COUNT,
    STORE_IF_UNCHANGED,
    UNLINK_BATCH,
)


def _tell(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


class SyncRedisBackend:
    """Every command runs inside ``with TRANSLATED:``, so only ``BackendError`` leaves it."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        timeout: float,
        max_connections: int,
        pool_timeout: float,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.url = url
        self.budget = budget or ConnectionBudget(max_connections, pool_timeout)
        options = pool_options(timeout, max_connections, pool_timeout)
        del options["timeout"]  # the wait for a free connection is the budget's
        pool = SyncPool.bounded(url, self.budget, **options)
        pool.connection_kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
        self.client = redis.Redis(connection_pool=pool)
        self._lane = SyncReadLane(pool)
        self._store = self.client.register_script(STORE_IF_UNCHANGED)
        self._release = self.client.register_script(RELEASE_LOCK)

    def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        with TRANSLATED:
            return self._lane.mget(keys.fetch)

    def get_many_batch(self, keys: Sequence[str]) -> list[bytes | None]:
        """Several entries' keys in one MGET (the shared rounds' batches)."""
        with TRANSLATED:
            return self._lane.mget(keys)

    def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        with TRANSLATED, self.client.pipeline(transaction=False) as pipe:
            for key, token in zip(missing, fresh, strict=True):
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "SET", key, token, "NX", "GET", "PX", ttl_ms, get=True
                )
            previous = pipe.execute()
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        with TRANSLATED:
            stored = self._store(keys=keys.fetch, args=[value, ttl_ms, lease, token_ttl_ms])
        return bool(stored)

    def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        with TRANSLATED:
            _tell(self.client, "SET", key, value, "PX", ttl_ms)

    def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        self.set(token_key, token, ttl_ms)

    def unlink_token(self, token_key: str) -> None:
        self.delete((token_key,))

    def server_identity(self) -> bytes | None:
        with TRANSLATED, self.client.pipeline(transaction=False) as pipe:
            pipe.execute_command("INFO", "server")  # type: ignore[no-untyped-call]
            pipe.execute_command("INFO", "replication")  # type: ignore[no-untyped-call]
            server, replication = pipe.execute()
        return identity_of(server, replication)

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with TRANSLATED:
            return int(_tell(self.client, "UNLINK", *keys))

    def delete_matching(self, match: str, keep_prefix: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        keep = keep_prefix.encode()
        with TRANSLATED:
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
        with TRANSLATED:
            return bool(_tell(self.client, "SET", key, owner, "NX", "PX", ttl_ms))

    def release_lock(self, key: str, owner: bytes) -> None:
        with TRANSLATED:
            self._release(keys=[key], args=[owner])

    def ttl_ms(self, key: str) -> int | None:
        with TRANSLATED:
            ttl = int(_tell(self.client, "PTTL", key))
        return None if ttl == -2 else ttl

    def scan(self, match: str, limit: int) -> list[str]:
        found: list[str] = []
        with TRANSLATED:
            for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                found.append(key.decode("utf-8", "replace"))
                if len(found) >= limit:
                    break
        return found

    def ping(self) -> None:
        with TRANSLATED:
            _tell(self.client, "PING")

    def close(self) -> None:
        self.client.close()
        # A client given its pool does not close it: disconnect, or the sockets leak.
        self.client.connection_pool.disconnect()
