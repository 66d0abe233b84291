"""The operations a procedure (``flows``) yields to its driver, and gets the result of.

Backend operations are written once against both typed protocols: each says, in one place,
which ``AsyncBackend`` / ``SyncBackend`` method it calls with which arguments, so mypy checks
the seam between the procedures and every backend (as redis-py writes each command once
against a typed protocol). A flow yields them through ``call``, which also gives the flow the
operation's result type.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Generator, Hashable, Sequence
from typing import Any, Generic, TypeVar

from freshcache.backends.base import AsyncBackend, EntryKeys, SyncBackend

R = TypeVar("R")
T = TypeVar("T")


class BackendOp(Generic[R]):
    """One backend primitive with its arguments; ``R`` is what it returns."""

    __slots__ = ()

    def on_async(self, backend: AsyncBackend) -> Awaitable[R]:
        raise NotImplementedError

    def on_sync(self, backend: SyncBackend) -> R:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, slots=True)
class GetMany(BackendOp[list[bytes | None]]):
    keys: EntryKeys

    def on_async(self, backend: AsyncBackend) -> Awaitable[list[bytes | None]]:
        return backend.get_many(self.keys)

    def on_sync(self, backend: SyncBackend) -> list[bytes | None]:
        return backend.get_many(self.keys)


@dataclasses.dataclass(frozen=True, slots=True)
class CreateTokens(BackendOp[list[bytes]]):
    keys: EntryKeys
    missing: Sequence[str]
    fresh: Sequence[bytes]
    ttl_ms: int

    def on_async(self, backend: AsyncBackend) -> Awaitable[list[bytes]]:
        return backend.create_tokens(self.keys, self.missing, self.fresh, self.ttl_ms)

    def on_sync(self, backend: SyncBackend) -> list[bytes]:
        return backend.create_tokens(self.keys, self.missing, self.fresh, self.ttl_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class StoreIfUnchanged(BackendOp[bool]):
    keys: EntryKeys
    value: bytes
    ttl_ms: int
    lease: bytes
    token_ttl_ms: int

    def on_async(self, backend: AsyncBackend) -> Awaitable[bool]:
        return backend.store_if_unchanged(
            self.keys, self.value, self.ttl_ms, self.lease, self.token_ttl_ms
        )

    def on_sync(self, backend: SyncBackend) -> bool:
        return backend.store_if_unchanged(
            self.keys, self.value, self.ttl_ms, self.lease, self.token_ttl_ms
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SetValue(BackendOp[None]):
    key: str
    value: bytes
    ttl_ms: int

    def on_async(self, backend: AsyncBackend) -> Awaitable[None]:
        return backend.set(self.key, self.value, self.ttl_ms)

    def on_sync(self, backend: SyncBackend) -> None:
        return backend.set(self.key, self.value, self.ttl_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class Bump(BackendOp[None]):
    token_key: str
    token: bytes
    ttl_ms: int

    def on_async(self, backend: AsyncBackend) -> Awaitable[None]:
        return backend.bump(self.token_key, self.token, self.ttl_ms)

    def on_sync(self, backend: SyncBackend) -> None:
        return backend.bump(self.token_key, self.token, self.ttl_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class UnlinkToken(BackendOp[None]):
    token_key: str

    def on_async(self, backend: AsyncBackend) -> Awaitable[None]:
        return backend.unlink_token(self.token_key)

    def on_sync(self, backend: SyncBackend) -> None:
        return backend.unlink_token(self.token_key)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerIdentity(BackendOp[bytes | None]):
    def on_async(self, backend: AsyncBackend) -> Awaitable[bytes | None]:
        return backend.server_identity()

    def on_sync(self, backend: SyncBackend) -> bytes | None:
        return backend.server_identity()


@dataclasses.dataclass(frozen=True, slots=True)
class Delete(BackendOp[int]):
    keys: Sequence[str]

    def on_async(self, backend: AsyncBackend) -> Awaitable[int]:
        return backend.delete(self.keys)

    def on_sync(self, backend: SyncBackend) -> int:
        return backend.delete(self.keys)


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteMatching(BackendOp[int]):
    match: str
    keep_prefix: str

    def on_async(self, backend: AsyncBackend) -> Awaitable[int]:
        return backend.delete_matching(self.match, self.keep_prefix)

    def on_sync(self, backend: SyncBackend) -> int:
        return backend.delete_matching(self.match, self.keep_prefix)


@dataclasses.dataclass(frozen=True, slots=True)
class AcquireLock(BackendOp[bool]):
    key: str
    owner: bytes
    ttl_ms: int

    def on_async(self, backend: AsyncBackend) -> Awaitable[bool]:
        return backend.acquire_lock(self.key, self.owner, self.ttl_ms)

    def on_sync(self, backend: SyncBackend) -> bool:
        return backend.acquire_lock(self.key, self.owner, self.ttl_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseLock(BackendOp[None]):
    key: str
    owner: bytes

    def on_async(self, backend: AsyncBackend) -> Awaitable[None]:
        return backend.release_lock(self.key, self.owner)

    def on_sync(self, backend: SyncBackend) -> None:
        return backend.release_lock(self.key, self.owner)


# ------------------------------------------------------------------------- not the backend


@dataclasses.dataclass(frozen=True, slots=True)
class Compute:
    """Run the cached function with the caller's arguments."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


class FlightPool(enum.Enum):
    """Separate single-flight tables, so a token creation never joins a value computation."""

    VALUES = "values"
    TOKENS = "tokens"


@dataclasses.dataclass(frozen=True, slots=True)
class Shared:
    """Run ``make()`` once per process for concurrent callers with the same ``key``."""

    pool: FlightPool
    key: Hashable
    make: Callable[[], Flow[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class InFlight:
    """Is a value flight with this key running in this process?"""

    key: Hashable


Op = BackendOp[Any] | Compute | Sleep | Shared | InFlight
#: A procedure: yields operations, receives their results, returns ``T``.
Flow = Generator[Op, Any, T]
COMPUTE = Compute()


def call(op: BackendOp[R]) -> Flow[R]:
    """``result = yield from call(op)``: a backend operation with its result typed."""
    result: R = yield op
    return result
