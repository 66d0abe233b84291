"""The backend contract: a few storage primitives, async and sync, nothing about keys, decorators
or metrics. Policy (generations, leases, timeouts, breaker) lives in ``Cache``; a backend only
stores bytes. Both protocols have the same methods so a backend can offer either or both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol


class BackendError(Exception):
    """The backend could not answer. ``kind``: "timeout", "connection" or "server"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclasses.dataclass(frozen=True, slots=True)
class EntryKeys:
    """The keys of one entry, as the cache derived them: a backend takes them from here and
    never parses key text to tell an entry from a token."""

    entry: str
    #: The generation-token keys the entry is checked against, the namespace root first.
    tokens: tuple[str, ...]
    #: ``(entry, *tokens)``: what one read fetches, built once.
    fetch: tuple[str, ...]

    @classmethod
    def of(cls, entry: str, tokens: Sequence[str] = ()) -> EntryKeys:
        return cls(entry, tuple(tokens), (entry, *tokens))


def split_batch(
    reply: Sequence[bytes | None], batch: Sequence[EntryKeys]
) -> list[list[bytes | None]]:
    """One MGET's reply for several entries' ``fetch`` keys, put together, split back up."""
    if len(reply) != sum(len(keys.fetch) for keys in batch):
        raise BackendError("server", "a batched read answered the wrong number of keys")
    out: list[list[bytes | None]] = []
    start = 0
    for keys in batch:
        end = start + len(keys.fetch)
        out.append(list(reply[start:end]))
        start = end
    return out


class AsyncBackend(Protocol):
    """Storage primitives; every method may raise ``BackendError`` and nothing else."""

    kind: str

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        """The values of ``keys.fetch`` in one round trip (``None`` where absent): the entry,
        then its tokens. A sharded backend routes them all by the entry key."""
        ...

    async def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        """For each token key in ``missing`` (some of ``keys.tokens``): store ``fresh[i]`` if
        absent; return the token now there (one round trip)."""
        ...

    async def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        """Replace the token at ``token_key`` wherever it is kept (every shard, in a cluster)."""
        ...

    async def unlink_token(self, token_key: str) -> None:
        """Delete the token at ``token_key`` wherever it is kept: the fallback of a refused
        bump (a missing token means "invalid", and Redis allows UNLINK under OOM)."""
        ...

    async def server_identity(self) -> bytes | None:
        """What identifies the dataset's history on the server (Redis: run id and replication
        id, which change on a restart or a failover); ``None`` for a backend without one."""
        ...

    async def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        """Store ``value`` at ``keys.entry`` only if the entry still starts with ``lease``
        (empty lease: absent) and every token of ``keys.tokens`` still exists; extend those
        tokens' TTLs to ``token_ttl_ms`` when they are below half of it."""
        ...

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        """Write an entry-key value (a tombstone, or an unconditional store)."""
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete entry keys; the number that existed."""
        ...

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        """Delete keys matching the glob ``match`` (SCAN + UNLINK), except ``keep_prefix*``."""
        ...

    async def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool: ...

    async def release_lock(self, key: str, owner: bytes) -> None:
        """Release only if ``owner`` still holds it."""
        ...

    async def ttl_ms(self, key: str) -> int | None:
        """Remaining time to live of an entry key; ``None`` if absent, -1 if it has none."""
        ...

    async def scan(self, match: str, limit: int) -> list[str]:
        """Up to ``limit`` keys matching ``match`` (bounded; for tooling, never a request path)."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class SyncBackend(Protocol):
    """The same primitives for synchronous callers."""

    kind: str

    def get_many(self, keys: EntryKeys) -> list[bytes | None]: ...

    def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]: ...

    def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None: ...

    def unlink_token(self, token_key: str) -> None: ...

    def server_identity(self) -> bytes | None: ...

    def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool: ...

    def set(self, key: str, value: bytes, ttl_ms: int) -> None: ...

    def delete(self, keys: Sequence[str]) -> int: ...

    def delete_matching(self, match: str, keep_prefix: str) -> int: ...

    def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool: ...

    def release_lock(self, key: str, owner: bytes) -> None: ...

    def ttl_ms(self, key: str) -> int | None: ...

    def scan(self, match: str, limit: int) -> list[str]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
