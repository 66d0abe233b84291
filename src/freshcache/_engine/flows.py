"""The cache's procedures, written once for async and sync callers.

Each procedure is a generator that yields operations (``ops``: a typed backend call, the user's
function, a pause, a shared single-flight computation) and receives their results; the drivers
(``drivers``) run it with ``await`` for async callers and plainly for sync ones. A failed
operation is thrown back into the generator at the ``yield``, so ``try``/``except BackendError``
and ``finally`` read as in ordinary code. The hit path does not come here: it is a few lines in
each of the engine's call paths, and a generator would cost it a microsecond.

A procedure receives the small objects it needs (``Context`` for reads, ``Invalidations`` for
writes) and the ``Lookup`` of one call; never the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from freshcache import entry as envelope
from freshcache._engine.health import Health, refuses_writes
from freshcache._engine.invalidation import Invalidations, Prepared, Strategy
from freshcache._engine.keyspace import KeySpace, Located
from freshcache._engine.ops import (
    COMPUTE,
    AcquireLock,
    Bump,
    CreateTokens,
    Delete,
    DeleteMatching,
    FlightPool,
    Flow,
    GetMany,
    InFlight,
    ReleaseLock,
    ServerIdentity,
    SetValue,
    Shared,
    Sleep,
    StoreIfUnchanged,
    UnlinkToken,
    call,
)
from freshcache._engine.rules import (
    MIN_TOKEN_TTL_MS,
    MIN_TOMBSTONE_TTL_MS,
    NO_VALUE,
    EntryRules,
)
from freshcache._engine.spec import FunctionSpec
from freshcache.backends.base import BackendError, EntryKeys
from freshcache.metrics import Counters
from freshcache.tokens import PatternKind, new_token

log = logging.getLogger("freshcache")

#: Backoff of a process waiting on another's lock: 4 ms doubling to at most 200 ms.
LOCK_POLL_FIRST, LOCK_POLL_MAX = 0.004, 0.2
#: The identity of the server a namespace was written on is kept this long (refreshed at each
#: check that finds it changed); if it is evicted or expires, the next check starts a fresh
#: generation: a cold cache, never a stale one.
SERVER_KEY_TTL_MS = 30 * 24 * 3600 * 1000
#: The single-flight key of the server check (token flights are keyed by tuples of keys).
VERIFY_FLIGHT = ("freshcache", "verify-server")
#: How long callers of one face wait for the other face's server check before they bypass.
VERIFY_WAIT = 10.0
#: How long the lock held while a process starts a namespace's generation on a new server
#: lives if its holder dies: the others wait for it (bounded by VERIFY_WAIT), then take it.
SERVER_CLAIM_TTL_MS = 10_000
#: How long an invalidation waits for a replay another caller is at before it is kept.
REPLAY_WAIT = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What the read procedures use: entry rules, health (breaker), key space, the clock."""

    rules: EntryRules
    health: Health
    keys: KeySpace


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """One cached call in progress: the function, its keys, its stats record."""

    spec: FunctionSpec
    loc: Located
    counters: Counters


@dataclasses.dataclass(frozen=True, slots=True)
class Hit:
    value: Any


# ------------------------------------------------------------------------------ reading


def after_read(
    ctx: Context, lookup: Lookup, values: list[bytes | None], value: Any, stamp: bytes | None
) -> Flow[Any]:
    """Everything after a read that was not a plain hit: an early refresh, or a miss."""
    loc, counters = lookup.loc, lookup.counters
    lease = envelope.lease_of(values[0])
    if value is not NO_VALUE:
        assert stamp is not None  # a valid entry was read under a complete stamp
        if (yield InFlight((loc.entry, stamp, lease))):
            counters.hits += 1  # someone in this process is already refreshing it
            return value
        counters.early_refreshes += 1
        return (yield from flight(ctx, lookup, stamp, lease))
    if stamp is None:
        missing, fresh = ctx.rules.missing_tokens(loc, values)
        try:
            # One creation per process for callers that found the same tokens missing; it
            # must happen before the body runs, so the value is stored under them.
            created = yield Shared(
                FlightPool.TOKENS,
                (loc.entry, *missing),
                lambda: call(CreateTokens(loc, missing, fresh, MIN_TOKEN_TTL_MS)),
            )
        except BackendError as exc:
            ctx.health.failed(exc, counters)
            return (yield COMPUTE)
        stamp = ctx.rules.merged_stamp(loc, values, missing, created)
    return (yield from flight(ctx, lookup, stamp, lease))


def flight(ctx: Context, lookup: Lookup, stamp: bytes, lease: bytes) -> Flow[Any]:
    spec = lookup.spec

    def make() -> Flow[Any]:
        if spec.lock:
            return fill_locked(ctx, lookup, stamp, lease)
        return fill(ctx, lookup, stamp, lease)

    if not spec.single_flight:
        return (yield from make())
    # Keyed by the tokens and the lease too: a read that began after an invalidation (a new
    # token, or a tombstone at the entry) never joins a computation that began before it.
    return (yield Shared(FlightPool.VALUES, (lookup.loc.entry, stamp, lease), make))


def fill(ctx: Context, lookup: Lookup, stamp: bytes, lease: bytes) -> Flow[Any]:
    """Compute the value and store it if the entry is still what the reader saw."""
    spec, counters, rules = lookup.spec, lookup.counters, ctx.rules
    started = ctx.health.clock()
    value = yield COMPUTE
    if not_to_store(spec, value, counters):
        return value
    entry = rules.encode_entry(spec, value, stamp, ctx.health.clock() - started, counters)
    if entry is None:
        return value
    ttl_ms = rules.ttl_ms(spec)
    store = StoreIfUnchanged(lookup.loc, entry, ttl_ms, lease, rules.token_ttl_ms(ttl_ms))
    try:
        stored = yield from call(store)
    except BackendError as exc:
        ctx.health.failed(exc, counters)
        return value
    if stored:
        counters.sets += 1
        ctx.health.wrote()
    else:
        counters.bypasses["lease_lost"] += 1  # invalidated while computing: not stored
    return value


def not_to_store(spec: FunctionSpec, value: Any, counters: Counters) -> bool:
    """True (and counted) when the decorator's ``condition`` refuses this result. A condition
    that raises refuses it too (logged): the caller still gets the value it computed."""
    if spec.condition is None:
        return False
    try:
        if spec.condition(value):
            return False
    except Exception:
        log.exception(
            "freshcache: condition= of %s raised; the result is not stored", spec.qualname
        )
    counters.bypasses["condition"] += 1
    return True


def fill_locked(ctx: Context, lookup: Lookup, stamp: bytes, lease: bytes) -> Flow[Any]:
    """``fill`` under a distributed lock: one computation across processes."""
    spec, counters, clock = lookup.spec, lookup.counters, ctx.health.clock
    lock_key = ctx.keys.lock_key(lookup.loc, stamp)
    owner = new_token()
    try:
        acquired = yield from call(AcquireLock(lock_key, owner, spec.lock_timeout_ms))
    except BackendError as exc:
        ctx.health.failed(exc, counters)
        return (yield from fill(ctx, lookup, stamp, lease))
    if acquired:
        try:
            # Look again now that we hold the lock: the previous holder may have stored the
            # value between our read and our acquiring the lock.
            seen = yield from reread(ctx, lookup, stamp)
            if isinstance(seen, Hit):
                return seen.value
            return (yield from fill(ctx, lookup, stamp, seen))
        finally:
            with contextlib.suppress(BackendError):  # else it expires after lock_timeout
                yield from call(ReleaseLock(lock_key, owner))
    counters.lock_waits += 1
    deadline = clock() + spec.lock_timeout_ms / 1000
    delay = LOCK_POLL_FIRST
    while (remaining := deadline - clock()) > 0:
        # Exponential backoff, not a polling storm: a handful of reads per waiting process.
        yield Sleep(min(delay, remaining))
        delay = min(delay * 2, LOCK_POLL_MAX)
        seen = yield from reread(ctx, lookup, stamp)
        if isinstance(seen, Hit):
            return seen.value
        lease = seen
    # The holder died or is too slow: compute ourselves rather than wait forever.
    return (yield from fill(ctx, lookup, stamp, lease))


def reread(ctx: Context, lookup: Lookup, stamp: bytes) -> Flow[Hit | bytes]:
    """A hit for ``stamp``, or the lease to store under."""
    try:
        values = yield from call(GetMany(lookup.loc))
    except BackendError as exc:
        ctx.health.failed(exc, lookup.counters)
        return envelope.ABSENT_LEASE
    raw = values[0]
    if raw is not None and raw.startswith(stamp):
        value = ctx.rules.decode_valid(lookup.spec, raw, stamp, lookup.counters)
        if value is not NO_VALUE:
            return Hit(value)
    return envelope.lease_of(raw)


def naive(ctx: Context, lookup: Lookup) -> Flow[Any]:
    """``strategy="scan"``: the audited design (GET, SET, no tokens), kept for comparison."""
    spec, loc, counters, rules = lookup.spec, lookup.loc, lookup.counters, ctx.rules
    try:
        (raw,) = yield from call(GetMany(EntryKeys.of(loc.entry)))  # no tokens
    except BackendError as exc:
        ctx.health.failed(exc, counters)
        return (yield COMPUTE)
    if raw is not None:
        value = rules.decode_valid(spec, raw, b"", counters)
        if value is not NO_VALUE:
            counters.hits += 1
            return value
    counters.misses += 1
    started = ctx.health.clock()
    value = yield COMPUTE
    if not_to_store(spec, value, counters):
        return value
    entry = rules.encode_entry(spec, value, b"", ctx.health.clock() - started, counters)
    if entry is not None:
        try:
            yield from call(SetValue(loc.entry, entry, rules.ttl_ms(spec)))
            counters.sets += 1
        except BackendError as exc:
            ctx.health.failed(exc, counters)
    return value


def warm(ctx: Context, lookup: Lookup) -> Flow[Any]:
    """Recompute one entry and store it, whatever is cached now."""
    loc = lookup.loc
    try:
        values = yield from call(GetMany(loc))
        missing, fresh = ctx.rules.missing_tokens(loc, values)
        created = (
            (yield from call(CreateTokens(loc, missing, fresh, MIN_TOKEN_TTL_MS)))
            if missing
            else []
        )
    except BackendError as exc:
        ctx.health.failed(exc, lookup.counters)
        return (yield COMPUTE)
    stamp = ctx.rules.merged_stamp(loc, values, missing, created)
    return (yield from fill(ctx, lookup, stamp, envelope.lease_of(values[0])))


# ------------------------------------------------------------------------------ invalidating


def apply(inv: Invalidations, pattern: str) -> Flow[None]:
    plan = inv.plan(pattern)
    keys = inv.keys
    if plan.kind is PatternKind.GENERATION:
        yield from replace_token(inv, keys.token_key(plan.segments), MIN_TOKEN_TTL_MS)
    elif plan.kind is PatternKind.ENTRY:
        if inv.strategy is Strategy.SCAN:  # the naive design deletes
            yield from call(Delete((keys.key(pattern),)))
        else:
            # The entry's own token, read with its prefixes' tokens: a reader that loaded
            # before this cannot store a valid entry, and if the new token is evicted or
            # deleted, the one created in its place is new too (absence means "invalid").
            token_key = keys.entry_token_key(pattern)
            yield from replace_token(inv, token_key, MIN_TOMBSTONE_TTL_MS)
    else:
        yield from call(DeleteMatching(keys.key(pattern), keys.reserved_prefix))


def replace_token(inv: Invalidations, token_key: str, ttl_ms: int) -> Flow[None]:
    """Bump a token; if the server refuses the write (OOM, a replica), delete it instead: a
    missing token means "invalid" to every process, and UNLINK is allowed under OOM."""
    try:
        yield from call(Bump(token_key, new_token(), ttl_ms))
    except BackendError as exc:
        if not refuses_writes(exc):
            raise
        inv.health.writes_refused = True
        yield from call(UnlinkToken(token_key))
    else:
        inv.health.wrote()


def verify_server(inv: Invalidations) -> Flow[None]:
    """Before serving from a server reached anew: is it the one the namespace was written on?

    The identity the namespace was written under is kept in the server itself, so a server
    restarted from an older snapshot, or a promoted replica that missed some bumps, is noticed
    by every process, also one that never saw the old server. Then the namespace starts a fresh
    generation (its root token replaced) before anything is served from it."""
    health = inv.health
    if not (yield from claim(health.begin_verify, health.clock, VERIFY_WAIT)):
        return  # the other face's check is still running: callers here bypass, not bump twice
    try:
        if not health.unverified:
            return  # checked by the other face since this flight began
        epoch = health.identity_epoch
        current = yield from call(ServerIdentity())
        if current is not None and not (yield from adopt_server(inv, current)):
            return  # another process is starting the generation: bypass until it is done
        if health.identity_epoch == epoch:
            health.unverified = False  # else a failure since may have reached another server
    finally:
        health.end_verify()


def adopt_server(inv: Invalidations, current: bytes) -> Flow[bool]:
    """Make ``current`` the server the namespace is written on, starting a fresh generation
    if it is not already. False if another process held that change for ``VERIFY_WAIT``.

    Processes that meet a new server at the same moment would each find no identity stored
    and each replace the root token, the later replacement invalidating what the others
    stored meanwhile (every process's first values, computed again). So the change is made
    under a lock: its holder reads the identity again, replaces the token, stores the identity;
    the others wait until the identity is there and start nothing."""
    health, keys = inv.health, inv.keys
    deadline, delay = health.clock() + VERIFY_WAIT, LOCK_POLL_FIRST
    owner = new_token()
    while True:
        (stored,) = yield from call(GetMany(EntryKeys.of(keys.server_key)))
        if stored == current:
            return True
        try:
            held = yield from call(AcquireLock(keys.server_claim_key, owner, SERVER_CLAIM_TTL_MS))
        except BackendError as exc:
            if not refuses_writes(exc):
                raise
            # A server refusing writes stores no values either: replacing the token (by
            # deleting it) unlocked costs no process anything it could have kept.
            yield from start_generation(inv, current, stored)
            return True
        if held:
            try:
                (stored,) = yield from call(GetMany(EntryKeys.of(keys.server_key)))
                if stored != current:  # not done by a holder before this one
                    yield from start_generation(inv, current, stored)
            finally:
                with contextlib.suppress(BackendError):  # else it expires after its TTL
                    yield from call(ReleaseLock(keys.server_claim_key, owner))
            return True
        remaining = deadline - health.clock()
        if remaining <= 0:
            return False
        yield Sleep(min(delay, remaining))
        delay = min(delay * 2, LOCK_POLL_MAX)


def start_generation(inv: Invalidations, current: bytes, stored: bytes | None) -> Flow[None]:
    """Replace the namespace's root token, then record ``current`` as its server."""
    keys = inv.keys
    yield from replace_token(inv, keys.token_key(()), MIN_TOKEN_TTL_MS)
    yield from call(SetValue(keys.server_key, current, SERVER_KEY_TTL_MS))
    inv.health.new_generations += 1
    if stored is not None:
        log.warning(
            "freshcache: the server of namespace %r changed (restart or failover); "
            "started a fresh generation",
            keys.namespace,
        )


def claim(take: Callable[[], bool], clock: Callable[[], float], wait: float) -> Flow[bool]:
    """Try ``take`` (a non-blocking claim: the server check, the replay) until it succeeds or
    ``wait`` seconds have passed, sleeping a little longer each time (2 ms doubling to 50)."""
    deadline, delay = clock() + wait, 0.002
    while not take():
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        yield Sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    return True


def recover(inv: Invalidations) -> Flow[bool]:
    """True when the cache may be used again: the breaker lets a call through and every kept
    invalidation has been replayed, in order."""
    if not inv.health.breaker.allow():
        return False
    return (yield from replay(inv))


def replay(inv: Invalidations, wait: float = 0.0) -> Flow[bool]:
    """``recover`` without asking the breaker (``close()`` flushes even with it open).
    ``wait``: how long to wait for a replay another caller is at (0: bypass instead)."""
    health = inv.health
    if health.unverified:
        try:
            # One check per process for concurrent callers: they wait for it, not bypass.
            yield Shared(FlightPool.TOKENS, VERIFY_FLIGHT, lambda: verify_server(inv))
        except BackendError as exc:
            health.failed(exc)
            return False
        if health.unverified:
            return False  # the check is running on the other face, or failed meanwhile
    if not health.pending:
        return True
    if not (yield from claim(health.begin_replay, health.clock, wait)):
        return False  # another caller is replaying; bypass until it is done
    try:
        if not health.pending:
            return True  # the other caller replayed everything while this one waited
        batch = health.pending.snapshot()
        for pattern, _sequence in batch:
            yield from apply(inv, pattern)
    except BackendError as exc:
        health.failed(exc)
        return False
    finally:
        health.end_replay()
    health.pending.discard_applied(batch)
    health.succeeded()
    for pattern, _sequence in batch:
        inv.record(pattern, None, applied=True, kind="replayed")
    return not health.pending


def invalidate_now(inv: Invalidations, prepared: list[Prepared]) -> Flow[list[Prepared]]:
    """Apply ``prepared`` in order, keeping what the backend does not answer (and everything
    after it); returns the patterns applied, the ones other processes' leases must be
    waited out for."""
    unreachable = False
    applied: list[Prepared] = []
    for index, (pattern, label) in enumerate(prepared):
        try:
            # Order matters: anything kept from before must be applied before this one. An
            # invalidation does not wait out the breaker as a read does: a read around the
            # cache is safe, an invalidation only kept is not (other processes read what it
            # invalidates until it is replayed). So it tries the backend (once per call), and
            # waits a bounded while for a replay another caller is at.
            if unreachable or not (yield from replay(inv, wait=REPLAY_WAIT)):
                unreachable = True
                inv.kept(pattern, label)
                continue
            try:
                yield from apply(inv, pattern)
            except BackendError as exc:
                if exc.kind != "connection":
                    raise
                # A pooled connection that died while idle (the server restarted, or failed
                # over): once more, at once, on a new one, rather than keep the invalidation
                # while other processes read what it invalidates. The server reached may be
                # another: ``failed`` marks it for the identity check before the next read.
                inv.health.failed(exc)
                yield from apply(inv, pattern)
        except BackendError as exc:
            inv.health.failed(exc)
            inv.kept(pattern, label)
            unreachable = True  # the later patterns are kept behind it, in order
        except BaseException:
            # Cancelled (a client disconnect) or interrupted mid-call: this pattern may or may
            # not have reached the backend, the later ones have not. Keep them all (replaying
            # a bump again is harmless), then let the cancellation go on.
            for rest, rest_label in prepared[index:]:
                inv.kept(rest, rest_label)
            raise
        else:
            inv.health.succeeded()
            inv.record(pattern, label, applied=True)
            applied.append((pattern, label))
    return applied
