"""The cache's procedures, written once for async and sync callers.

Each procedure is a generator that yields *operations* (a backend call, the user's function,
a pause, a shared single-flight computation) and receives their results; ``Cache`` drives it
with ``await`` for async callers and plainly for sync ones. A failed operation is thrown back
into the generator at the ``yield``, so ``try``/``except BackendError`` and ``finally`` read
as in ordinary code. The hit path does not come here: it is a few lines in each driver, and
a generator would cost it a microsecond.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Generator, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from freshcache import entry as envelope
from freshcache.backends import BackendError
from freshcache.metrics import Counters
from freshcache.spec import FunctionSpec, Located
from freshcache.tokens import PatternKind, new_token, token_key

if TYPE_CHECKING:
    from freshcache.cache import Cache

T = TypeVar("T")
Flow = Generator["Op", Any, T]

#: Token keys are created with (and bumped to) at least a day to live; see Cache._token_ttl_ms.
MIN_TOKEN_TTL_MS = 24 * 3600 * 1000
#: A tombstone must outlive any reader still computing from before it.
MIN_TOMBSTONE_TTL_MS = 600 * 1000
#: Backoff of a process waiting on another's lock: 4 ms doubling to at most 200 ms.
LOCK_POLL_FIRST, LOCK_POLL_MAX = 0.004, 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """Call a backend method."""

    method: str
    args: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Compute:
    """Run the cached function with the caller's arguments."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Shared:
    """Run ``make()`` once per process for concurrent callers with the same ``key``."""

    pool: str  # "value" or "tokens": separate flight tables
    key: Hashable
    make: Callable[[], Flow[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class InFlight:
    """Is a value flight with this key running in this process?"""

    key: Hashable


Op = Call | Compute | Sleep | Shared | InFlight
COMPUTE = Compute()


@dataclasses.dataclass(frozen=True, slots=True)
class Hit:
    value: Any


# ------------------------------------------------------------------------------ reading


def after_read(
    cache: Cache,
    spec: FunctionSpec,
    loc: Located,
    values: list[bytes | None],
    value: Any,
    stamp: bytes | None,
    counters: Counters,
) -> Flow[Any]:
    """Everything after a read that was not a plain hit: an early refresh, or a miss."""
    lease = envelope.lease_of(values[0])
    if value is not cache.NO_VALUE:
        assert stamp is not None  # a valid entry was read under a complete stamp
        if (yield InFlight((loc.key, stamp, lease))):
            counters.hits += 1  # someone in this process is already refreshing it
            return value
        counters.early_refreshes += 1
        return (yield from flight(cache, spec, loc, stamp, lease, counters))
    if stamp is None:
        missing, fresh = cache._fresh_tokens(loc, values)
        try:
            # One creation per process for callers that found the same tokens missing; it
            # must happen before the body runs, so the value is stored under them.
            created = yield Shared(
                "tokens",
                (loc.key, *missing),
                lambda: create_tokens(loc.key, missing, fresh),
            )
        except BackendError as exc:
            cache._failed(exc, counters)
            return (yield COMPUTE)
        stamp = cache._merge_tokens(loc, values, missing, created)
    return (yield from flight(cache, spec, loc, stamp, lease, counters))


def create_tokens(route: str, missing: list[str], fresh: list[bytes]) -> Flow[list[bytes]]:
    created: list[bytes] = yield Call("create_tokens", (route, missing, fresh, MIN_TOKEN_TTL_MS))
    return created


def flight(
    cache: Cache, spec: FunctionSpec, loc: Located, stamp: bytes, lease: bytes, counters: Counters
) -> Flow[Any]:
    def make() -> Flow[Any]:
        if spec.lock:
            return fill_locked(cache, spec, loc, stamp, lease, counters)
        return fill(cache, spec, loc, stamp, lease, counters)

    if not spec.single_flight:
        return (yield from make())
    # Keyed by the tokens and the lease too: a read that began after an invalidation (a new
    # token, or a tombstone at the entry) never joins a computation that began before it.
    return (yield Shared("value", (loc.key, stamp, lease), make))


def fill(
    cache: Cache, spec: FunctionSpec, loc: Located, stamp: bytes, lease: bytes, counters: Counters
) -> Flow[Any]:
    """Compute the value and store it if the entry is still what the reader saw."""
    started = time.perf_counter()
    value = yield COMPUTE
    entry = cache._encode_entry(spec, value, stamp, time.perf_counter() - started, counters)
    if entry is None:
        return value
    ttl_ms = cache._ttl_ms(spec)
    try:
        stored = yield Call(
            "store_if_unchanged",
            (loc.key, entry, ttl_ms, lease, loc.token_keys, cache._token_ttl_ms(ttl_ms)),
        )
    except BackendError as exc:
        cache._failed(exc, counters)
        return value
    if stored:
        counters.sets += 1
    else:
        counters.bypasses["lease_lost"] += 1  # invalidated while computing: not stored
    return value


def fill_locked(
    cache: Cache, spec: FunctionSpec, loc: Located, stamp: bytes, lease: bytes, counters: Counters
) -> Flow[Any]:
    """``fill`` under a distributed lock: one computation across processes."""
    lock_key = cache._lock_key(loc, stamp)
    owner = new_token()
    try:
        acquired = yield Call("acquire_lock", (lock_key, owner, spec.lock_timeout_ms))
    except BackendError as exc:
        cache._failed(exc, counters)
        return (yield from fill(cache, spec, loc, stamp, lease, counters))
    if acquired:
        try:
            # Look again now that we hold the lock: the previous holder may have stored the
            # value between our read and our acquiring the lock.
            seen = yield from reread(cache, spec, loc, stamp, counters)
            if isinstance(seen, Hit):
                return seen.value
            return (yield from fill(cache, spec, loc, stamp, seen, counters))
        finally:
            with contextlib.suppress(BackendError):  # else it expires after lock_timeout
                yield Call("release_lock", (lock_key, owner))
    counters.lock_waits += 1
    deadline = time.monotonic() + spec.lock_timeout_ms / 1000
    delay = LOCK_POLL_FIRST
    while (remaining := deadline - time.monotonic()) > 0:
        # Exponential backoff, not a polling storm: a handful of reads per waiting process.
        yield Sleep(min(delay, remaining))
        delay = min(delay * 2, LOCK_POLL_MAX)
        seen = yield from reread(cache, spec, loc, stamp, counters)
        if isinstance(seen, Hit):
            return seen.value
        lease = seen
    # The holder died or is too slow: compute ourselves rather than wait forever.
    return (yield from fill(cache, spec, loc, stamp, lease, counters))


def reread(
    cache: Cache, spec: FunctionSpec, loc: Located, stamp: bytes, counters: Counters
) -> Flow[Hit | bytes]:
    """A hit for ``stamp``, or the lease to store under."""
    try:
        values = yield Call("get_many", (loc.fetch,))
    except BackendError as exc:
        cache._failed(exc, counters)
        return envelope.ABSENT_LEASE
    raw = values[0]
    if raw is not None and raw.startswith(stamp):
        value = cache._decode_valid(spec, raw, stamp, counters)
        if value is not cache.NO_VALUE:
            return Hit(value)
    return envelope.lease_of(raw)


def naive(cache: Cache, spec: FunctionSpec, loc: Located, counters: Counters) -> Flow[Any]:
    """``strategy="scan"``: the audited design (GET, SET, no tokens), kept for comparison."""
    try:
        (raw,) = yield Call("get_many", ([loc.key],))
    except BackendError as exc:
        cache._failed(exc, counters)
        return (yield COMPUTE)
    if raw is not None:
        value = cache._decode_valid(spec, raw, b"", counters)
        if value is not cache.NO_VALUE:
            counters.hits += 1
            return value
    counters.misses += 1
    started = time.perf_counter()
    value = yield COMPUTE
    entry = cache._encode_entry(spec, value, b"", time.perf_counter() - started, counters)
    if entry is not None:
        try:
            yield Call("set", (loc.key, entry, cache._ttl_ms(spec)))
            counters.sets += 1
        except BackendError as exc:
            cache._failed(exc, counters)
    return value


def warm(cache: Cache, spec: FunctionSpec, loc: Located, counters: Counters) -> Flow[Any]:
    """Recompute one entry and store it, whatever is cached now."""
    try:
        values = yield Call("get_many", (loc.fetch,))
        missing, fresh = cache._fresh_tokens(loc, values)
        created = (yield from create_tokens(loc.key, missing, fresh)) if missing else []
    except BackendError as exc:
        cache._failed(exc, counters)
        return (yield COMPUTE)
    stamp = cache._merge_tokens(loc, values, missing, created)
    return (yield from fill(cache, spec, loc, stamp, envelope.lease_of(values[0]), counters))


# ------------------------------------------------------------------------------ invalidating


def apply(cache: Cache, pattern: str) -> Flow[None]:
    plan = cache._plan(pattern)
    namespace = cache.namespace
    if plan.kind is PatternKind.GENERATION:
        yield Call("bump", (token_key(namespace, plan.segments), new_token(), MIN_TOKEN_TTL_MS))
    elif plan.kind is PatternKind.ENTRY:
        key = f"{namespace}:{pattern}"
        if cache.strategy.value == "scan":  # the naive design deletes
            yield Call("delete", ([key],))
        else:
            # A tombstone, never a bare delete: a reader that loaded before it cannot store.
            tombstone = envelope.tombstone(new_token())
            yield Call("set", (key, tombstone, MIN_TOMBSTONE_TTL_MS))
    else:
        yield Call("delete_matching", (f"{namespace}:{pattern}", cache._reserved_prefix))


def recover(cache: Cache) -> Flow[bool]:
    """True when the cache may be used again: the breaker lets a call through and every kept
    invalidation has been replayed, in order."""
    if not cache.breaker.allow():
        return False
    if not cache.pending:
        return True
    if cache._replaying:
        return False  # another caller is replaying; bypass until it is done
    cache._replaying = True
    try:
        batch = cache.pending.snapshot()
        for pattern, _sequence in batch:
            yield from apply(cache, pattern)
    except BackendError as exc:
        cache._failed(exc)
        return False
    finally:
        cache._replaying = False
    cache.pending.discard_applied(batch)
    cache._succeeded()
    for pattern, _sequence in batch:
        cache._record(pattern, None, applied=True, kind="replayed")
    return not cache.pending


def invalidate_now(cache: Cache, prepared: list[tuple[str, str | None]]) -> Flow[None]:
    for pattern, label in prepared:
        # Order matters: anything kept from before must be applied before this one.
        if not (yield from recover(cache)):
            cache.pending.add(pattern)
            cache._record(pattern, label, applied=False)
            continue
        try:
            yield from apply(cache, pattern)
        except BackendError as exc:
            cache._failed(exc)
            cache.pending.add(pattern)
            cache._record(pattern, label, applied=False)
        else:
            cache._succeeded()
            cache._record(pattern, label, applied=True)
