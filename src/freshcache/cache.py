"""``Cache``: the read, store and invalidate paths, composed from keys, tokens, codecs,
backends, stampede control, resilience and metrics.

Read (one round trip): fetch the entry and the current tokens of all its prefixes together.
The entry is valid only if it starts with the stamp of those tokens. On a miss, the tokens
read are the ones stored with the new value, and the store is conditional on the entry being
unchanged since the read (a lease), so a reader that loaded before an invalidation can never
make its value visible after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import orjson

from freshcache import entry as envelope
from freshcache.backends import BackendError, ConnectionOptions, open_backends
from freshcache.codecs import DecodeError, EncodeError
from freshcache.keys import SEGMENT_SEPARATOR, WILDCARD
from freshcache.metrics import Counters, Metrics, PrefixStats
from freshcache.resilience import BreakerState, CircuitBreaker, PendingInvalidations
from freshcache.spec import FunctionSpec, Located, Seconds, to_ms
from freshcache.stampede import (
    AsyncSingleFlight,
    SyncSingleFlight,
    default_rand,
    should_refresh_early,
)
from freshcache.tokens import (
    LOCK_SEGMENT,
    PatternKind,
    PatternPlan,
    classify,
    new_token,
    token_key,
)

T = TypeVar("T")
log = logging.getLogger("freshcache")

_MIN_TOKEN_TTL_MS = 24 * 3600 * 1000
_MIN_TOMBSTONE_TTL_MS = 600 * 1000
_NO_VALUE: Any = object()  # a miss; never None, which is a value like any other
_TOKEN_END = envelope.TOKEN_END
_HEADER_END = envelope.HEADER_END


class Strategy(enum.Enum):
    GENERATION = "generation"
    SCAN = "scan"  # the naive design (GET/SET, SCAN + UNLINK), kept for comparison


class _Scope:
    """A unit of work: invalidations issued inside wait until it ends without an error."""

    __slots__ = ("_token", "after", "cache", "patterns")

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.patterns: list[tuple[str, str | None]] = []  # (pattern, explicit stats label)
        self.after: list[Callable[[], Any]] = []  # re-warming, run once they are applied
        self._token: contextvars.Token[tuple[_Scope, ...]] | None = None

    def _enter(self) -> _Scope:
        self._token = _SCOPES.set((*_SCOPES.get(), self))
        return self

    def _leave(self, failed: bool) -> bool:
        """Leave the scope; True when this scope must apply its invalidations now."""
        assert self._token is not None
        _SCOPES.reset(self._token)
        if failed:
            return False  # rolled back: nothing changed, nothing to invalidate
        outer = self.cache._scope()
        if outer is not None:
            outer.patterns.extend(self.patterns)  # the outer unit of work commits later
            outer.after.extend(self.after)
            return False
        return True

    async def __aenter__(self) -> _Scope:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._leave(exc_type is not None):
            await self.cache._invalidate_now_async(self.patterns)
            for callback in self.after:
                produced = callback()
                if inspect.isawaitable(produced):
                    await produced

    def __enter__(self) -> _Scope:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._leave(exc_type is not None):
            self.cache._invalidate_now_sync(self.patterns)
            for callback in self.after:
                callback()


_SCOPES: contextvars.ContextVar[tuple[_Scope, ...]] = contextvars.ContextVar(
    "freshcache_scopes", default=()
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Hit:
    value: Any


class Cache:
    """A cache on one backend URL and namespace. See ``Cache.from_url`` for the options."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        namespace: str = "freshcache",
        timeout: float = 0.05,
        pool_timeout: float = 1.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        max_value_bytes: int = 1024 * 1024,
        max_connections: int = 50,
        default_ttl: Seconds = 300,
        strategy: Literal["generation", "scan"] = "generation",
        max_pending_invalidations: int = 1000,
        verify_encoding: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(namespace, str) or not namespace or any(c in namespace for c in "*?[]\\"):
            raise ValueError(
                f"freshcache: namespace must be a non-empty string without wildcards, got "
                f"{namespace!r}"
            )
        for name, value in (("timeout", timeout), ("pool_timeout", pool_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"freshcache: {name} must be a positive number of seconds")
        if max_value_bytes < 1 or max_connections < 1:
            raise ValueError("freshcache: max_value_bytes and max_connections must be positive")
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            raise ValueError(
                f"freshcache: unknown strategy {strategy!r}; use 'generation' or 'scan'"
            ) from None
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        self.max_value_bytes = max_value_bytes
        self.default_ttl_ms = to_ms(default_ttl, "default_ttl")
        self.verify_encoding = verify_encoding
        self._clock = clock
        self._backends = open_backends(
            url, ConnectionOptions(float(timeout), max_connections, float(pool_timeout), clock)
        )
        self.metrics = Metrics()
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, clock)
        self.pending = PendingInvalidations(max_pending_invalidations)
        self._async_flights = AsyncSingleFlight()
        self._sync_flights = SyncSingleFlight()
        self._async_token_flights = AsyncSingleFlight()
        self._sync_token_flights = SyncSingleFlight()
        self._replaying = False
        self._last_error: str | None = None
        self._last_logged = 0.0
        self._suppressed_logs = 0
        self._rand = default_rand
        self._reserved_prefix = f"{namespace}{SEGMENT_SEPARATOR}__"
        self._counters_by_prefix: dict[str, Counters] = {}
        self._read_prefixes: dict[str, tuple[str | None, ...]] = {}

    @classmethod
    def from_url(cls, url: str, namespace: str = "freshcache", **options: Any) -> Cache:
        """Build a cache. Options: ``timeout`` (seconds per backend call, default 0.05),
        ``pool_timeout`` (wait for a free pooled connection, default 1.0),
        ``breaker_threshold`` (consecutive failures that open the breaker, default 5),
        ``breaker_cooldown`` (seconds before a probe, default 5), ``max_value_bytes`` (1 MiB),
        ``max_connections`` (50), ``default_ttl`` (300 s), ``strategy`` ("generation" or the
        naive "scan"), ``max_pending_invalidations`` (1000; beyond it they collapse into one
        invalidation of the namespace), ``verify_encoding`` (decode once before storing)."""
        return cls(url, namespace=namespace, **options)

    def __repr__(self) -> str:
        return f"Cache({self.url!r}, namespace={self.namespace!r})"

    @property
    def backend_kind(self) -> str:
        return self._backends.kind

    # ------------------------------------------------------------------ decorators (bound)

    def cached(
        self, ttl: Seconds | None = None, key_prefix: str | None = None, **options: Any
    ) -> Any:
        """``@cache.cached(...)``: like ``freshcache.cached`` but bound to this cache."""
        from freshcache.decorators import cached

        return cached(ttl, key_prefix, cache=self, **options)

    def invalidate_cache(self, *patterns: Any, **options: Any) -> Any:
        """``@cache.invalidate_cache(...)``: like ``freshcache.invalidate_cache``, bound here."""
        from freshcache.decorators import invalidate_cache

        return invalidate_cache(*patterns, cache=self, **options)

    # ------------------------------------------------------------------ observability

    def stats(self) -> Mapping[str, PrefixStats]:
        """Per key prefix (as written in the decorator): hits, misses, stale, sets,
        invalidations by kind, errors, bypasses, latency, and ``hit_ratio``."""
        return self.metrics.snapshot()

    def health(self) -> dict[str, Any]:
        """What this process knows without asking the backend (no I/O)."""
        return {
            "backend": self.backend_kind,
            "namespace": self.namespace,
            "reachable": self.breaker.state is BreakerState.CLOSED and self._last_error is None,
            "breaker": self.breaker.state.value,
            "pending_invalidations": len(self.pending),
            "last_error": self._last_error,
        }

    async def ping(self) -> bool:
        """Ask the backend; the answer also feeds the breaker."""
        try:
            await asyncio.wait_for(self._backends.async_backend.ping(), self.timeout * 4)
        except (BackendError, TimeoutError) as exc:
            self._failed(exc if isinstance(exc, BackendError) else BackendError("timeout", "ping"))
            return False
        self._succeeded()
        return True

    def recent_invalidations(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(e) for e in self.metrics.recent_invalidations()]

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        await self._backends.aclose()

    def close(self) -> None:
        self._backends.close()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ failure bookkeeping

    def _failed(self, exc: BackendError, counters: Counters | None = None) -> None:
        self.breaker.record_failure()
        self._last_error = str(exc)
        if counters is not None:
            counters.errors[exc.kind] += 1
        now = time.monotonic()
        if now - self._last_logged >= 10.0:  # rate-limited: an outage must not flood the logs
            log.warning(
                "freshcache: backend %s failed (%s); running uncached%s",
                self.backend_kind,
                exc,
                f" ({self._suppressed_logs} similar messages suppressed)"
                if self._suppressed_logs
                else "",
            )
            self._last_logged, self._suppressed_logs = now, 0
        else:
            self._suppressed_logs += 1

    def _succeeded(self) -> None:
        if self._last_error is not None:
            self._last_error = None
        self.breaker.record_success()

    def _bypass_reason(self) -> str:
        return "pending_invalidations" if self.pending else "breaker_open"

    # ------------------------------------------------------------------ entry bytes

    def _ttl_ms(self, spec: FunctionSpec) -> int:
        return spec.ttl_ms if spec.ttl_ms is not None else self.default_ttl_ms

    def _token_ttl_ms(self, ttl_ms: int) -> int:
        # A token must outlive every entry that references it.
        return max(_MIN_TOKEN_TTL_MS, 2 * ttl_ms)

    def _decode_valid(
        self, spec: FunctionSpec, raw: bytes, stamp: bytes, counters: Counters
    ) -> Any:
        """The value of an entry known to carry the current stamp, or ``_NO_VALUE`` if corrupt."""
        end = raw.find(envelope.HEADER_END, len(stamp))
        if end >= 0:
            try:
                return spec.codec.decode(raw[end + 1 :])
            except DecodeError:
                pass
        counters.errors["decode"] += 1
        return _NO_VALUE

    def _encode_entry(
        self, spec: FunctionSpec, value: Any, stamp: bytes, elapsed: float, counters: Counters
    ) -> bytes | None:
        try:
            payload = spec.codec.encode(value)
            if self.verify_encoding and spec.codec.decode(payload) != value:
                raise EncodeError("the value does not survive a round trip")
        except (EncodeError, DecodeError) as exc:
            counters.errors["encode"] += 1
            log.debug("freshcache: %s returned a value that is not cached: %s", spec.qualname, exc)
            return None
        if len(payload) > self.max_value_bytes:
            counters.errors["oversize"] += 1
            return None
        ttl_ms = self._ttl_ms(spec)
        return envelope.pack(stamp, int(elapsed * 1000), int(time.time() * 1000) + ttl_ms, payload)

    def _refresh_due(self, spec: FunctionSpec, raw: bytes, stamp: bytes) -> bool:
        try:
            delta_ms, expiry_ms, _ = envelope.timing_of(raw, len(stamp))
        except ValueError:
            return False
        return should_refresh_early(
            time.time() * 1000, expiry_ms, delta_ms, spec.early_refresh_beta, self._rand
        )

    def _lock_key(self, loc: Located, stamp: bytes) -> str:
        relative = loc.key[len(self.namespace) + 1 :]
        digest = envelope.make_stamp([stamp]).hex()[-16:]
        return f"{self.namespace}:{LOCK_SEGMENT}:{relative}:{digest}"

    def _judge(
        self, spec: FunctionSpec, values: list[bytes | None], counters: Counters
    ) -> tuple[Any, bytes | None]:
        """Classify a fetch: ``(value or _NO_VALUE, stamp or None if tokens are missing)``."""
        try:
            stamp = _TOKEN_END.join(values[1:]) + _TOKEN_END  # type: ignore[arg-type]
        except TypeError:  # a token is missing: nothing stored before can be valid
            counters.misses += 1
            return _NO_VALUE, None
        raw = values[0]
        if raw is None:
            counters.misses += 1
        elif raw.startswith(stamp):
            end = raw.find(_HEADER_END, len(stamp))
            if end >= 0:
                try:
                    return spec.codec.decode(raw[end + 1 :]), stamp
                except DecodeError:
                    pass
            counters.errors["decode"] += 1
            counters.misses += 1
        elif raw.startswith(envelope.TOMBSTONE_MARK):
            counters.misses += 1
        else:
            counters.stale += 1  # computed under tokens that have since been replaced
        return _NO_VALUE, stamp

    def _fresh_tokens(
        self, loc: Located, values: list[bytes | None]
    ) -> tuple[list[str], list[bytes]]:
        missing = [k for k, v in zip(loc.token_keys, values[1:], strict=True) if v is None]
        return missing, [new_token() for _ in missing]

    @staticmethod
    def _merge_tokens(
        loc: Located, values: list[bytes | None], missing: list[str], created: list[bytes]
    ) -> bytes:
        found = dict(zip(missing, created, strict=True))
        tokens = [
            v if v is not None else found[k]
            for k, v in zip(loc.token_keys, values[1:], strict=True)
        ]
        return envelope.make_stamp(tokens)

    # ================================================================== async read path

    async def _call_async(
        self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        func = spec.func
        counters = self._counters(spec)
        if (
            self.pending or self.breaker.state is not BreakerState.CLOSED
        ) and not await self._recover_async():
            counters.bypasses[self._bypass_reason()] += 1
            return await func(*args, **kwargs)
        loc = spec.locate(self.namespace, args, kwargs)
        if self.strategy is Strategy.SCAN:
            return await self._naive_call_async(spec, loc, args, kwargs, counters)
        backend = self._backends.async_backend
        started = time.perf_counter()
        try:
            values = await backend.get_many(loc.fetch)
        except BackendError as exc:
            self._failed(exc, counters)
            return await func(*args, **kwargs)
        if self._last_error is not None or self.breaker.state is not BreakerState.CLOSED:
            self._succeeded()
        value, stamp = self._judge(spec, values, counters)
        if value is not _NO_VALUE:
            assert stamp is not None  # a hit has a stamp and an entry
            assert values[0] is not None
            if (
                spec.early_refresh
                and self._refresh_due(spec, values[0], stamp)
                and not self._async_flights.in_flight(
                    (loc.key, stamp, envelope.lease_of(values[0]))
                )
            ):
                counters.early_refreshes += 1
                lease = envelope.lease_of(values[0])
                return await self._flight_async(spec, loc, stamp, lease, args, kwargs, counters)
            counters.hits += 1
            counters.observe(time.perf_counter() - started)
            return value
        if stamp is None:
            missing, fresh = self._fresh_tokens(loc, values)
            try:
                # One creation per process for callers that found the same tokens missing.
                created = await self._async_token_flights.run(
                    (loc.key, *missing),
                    lambda: backend.create_tokens(loc.key, missing, fresh, _MIN_TOKEN_TTL_MS),
                )
            except BackendError as exc:
                self._failed(exc, counters)
                return await func(*args, **kwargs)
            stamp = self._merge_tokens(loc, values, missing, created)
        result = await self._flight_async(
            spec, loc, stamp, envelope.lease_of(values[0]), args, kwargs, counters
        )
        counters.observe(time.perf_counter() - started)
        return result

    async def _flight_async(
        self,
        spec: FunctionSpec,
        loc: Located,
        stamp: bytes,
        lease: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        def fill() -> Awaitable[Any]:
            if spec.lock:
                return self._fill_locked_async(spec, loc, stamp, lease, args, kwargs, counters)
            return self._fill_async(spec, loc, stamp, lease, args, kwargs, counters)

        if not spec.single_flight:
            return await fill()
        # Keyed by the tokens and the lease too: a read that began after an invalidation (a new
        # token, or a tombstone at the entry) never joins a computation that began before it.
        return await self._async_flights.run((loc.key, stamp, lease), fill)

    async def _fill_async(
        self,
        spec: FunctionSpec,
        loc: Located,
        stamp: bytes,
        lease: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        started = time.perf_counter()
        value = await spec.func(*args, **kwargs)
        entry = self._encode_entry(spec, value, stamp, time.perf_counter() - started, counters)
        if entry is None:
            return value
        ttl_ms = self._ttl_ms(spec)
        try:
            stored = await self._backends.async_backend.store_if_unchanged(
                loc.key, entry, ttl_ms, lease, loc.token_keys, self._token_ttl_ms(ttl_ms)
            )
        except BackendError as exc:
            self._failed(exc, counters)
            return value
        if stored:
            counters.sets += 1
        else:
            counters.bypasses["lease_lost"] += 1  # invalidated while computing: not stored
        return value

    async def _fill_locked_async(
        self,
        spec: FunctionSpec,
        loc: Located,
        stamp: bytes,
        lease: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        backend = self._backends.async_backend
        lock_key = self._lock_key(loc, stamp)
        owner = new_token()
        try:
            acquired = await backend.acquire_lock(lock_key, owner, spec.lock_timeout_ms)
        except BackendError as exc:
            self._failed(exc, counters)
            return await self._fill_async(spec, loc, stamp, lease, args, kwargs, counters)
        if acquired:
            try:
                # Look again now that we hold the lock: the previous holder may have stored
                # the value between our read and our acquiring the lock.
                hit = await self._reread_async(spec, loc, stamp, counters)
                if isinstance(hit, _Hit):
                    return hit.value
                return await self._fill_async(spec, loc, stamp, hit, args, kwargs, counters)
            finally:
                with contextlib.suppress(BackendError):  # else it expires after lock_timeout
                    await backend.release_lock(lock_key, owner)
        counters.lock_waits += 1
        deadline = time.monotonic() + spec.lock_timeout_ms / 1000
        delay = 0.004
        while (remaining := deadline - time.monotonic()) > 0:
            # Exponential backoff, not a polling storm: a handful of reads per waiter.
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.2)
            hit = await self._reread_async(spec, loc, stamp, counters)
            if isinstance(hit, _Hit):
                return hit.value
            lease = hit
        # The holder died or is too slow: compute ourselves rather than wait forever.
        return await self._fill_async(spec, loc, stamp, lease, args, kwargs, counters)

    async def _reread_async(
        self, spec: FunctionSpec, loc: Located, stamp: bytes, counters: Counters
    ) -> _Hit | bytes:
        """A hit for ``stamp``, or the lease to store under."""
        try:
            values = await self._backends.async_backend.get_many(loc.fetch)
        except BackendError as exc:
            self._failed(exc, counters)
            return envelope.ABSENT_LEASE
        raw = values[0]
        if raw is not None and raw.startswith(stamp):
            value = self._decode_valid(spec, raw, stamp, counters)
            if value is not _NO_VALUE:
                return _Hit(value)
        return envelope.lease_of(raw)

    async def _naive_call_async(
        self,
        spec: FunctionSpec,
        loc: Located,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        backend = self._backends.async_backend
        try:
            (raw,) = await backend.get_many([loc.key])
        except BackendError as exc:
            self._failed(exc, counters)
            return await spec.func(*args, **kwargs)
        if raw is not None:
            value = self._decode_valid(spec, raw, b"", counters)
            if value is not _NO_VALUE:
                counters.hits += 1
                return value
        counters.misses += 1
        started = time.perf_counter()
        value = await spec.func(*args, **kwargs)
        entry = self._encode_entry(spec, value, b"", time.perf_counter() - started, counters)
        if entry is not None:
            try:
                await backend.set(loc.key, entry, self._ttl_ms(spec))
                counters.sets += 1
            except BackendError as exc:
                self._failed(exc, counters)
        return value

    # ================================================================== sync read path

    def _call_sync(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        func = spec.func
        counters = self._counters(spec)
        if (
            self.pending or self.breaker.state is not BreakerState.CLOSED
        ) and not self._recover_sync():
            counters.bypasses[self._bypass_reason()] += 1
            return func(*args, **kwargs)
        loc = spec.locate(self.namespace, args, kwargs)
        if self.strategy is Strategy.SCAN:
            return self._naive_call_sync(spec, loc, args, kwargs, counters)
        backend = self._backends.sync_backend
        started = time.perf_counter()
        try:
            values = backend.get_many(loc.fetch)
        except BackendError as exc:
            self._failed(exc, counters)
            return func(*args, **kwargs)
        if self._last_error is not None or self.breaker.state is not BreakerState.CLOSED:
            self._succeeded()
        value, stamp = self._judge(spec, values, counters)
        if value is not _NO_VALUE:
            assert stamp is not None  # a hit has a stamp and an entry
            assert values[0] is not None
            if spec.early_refresh and self._refresh_due(spec, values[0], stamp):
                counters.early_refreshes += 1
                lease = envelope.lease_of(values[0])
                return self._flight_sync(spec, loc, stamp, lease, args, kwargs, counters)
            counters.hits += 1
            counters.observe(time.perf_counter() - started)
            return value
        if stamp is None:
            missing, fresh = self._fresh_tokens(loc, values)
            try:
                created = self._sync_token_flights.run(
                    (loc.key, *missing),
                    lambda: backend.create_tokens(loc.key, missing, fresh, _MIN_TOKEN_TTL_MS),
                )
            except BackendError as exc:
                self._failed(exc, counters)
                return func(*args, **kwargs)
            stamp = self._merge_tokens(loc, values, missing, created)
        result = self._flight_sync(
            spec, loc, stamp, envelope.lease_of(values[0]), args, kwargs, counters
        )
        counters.observe(time.perf_counter() - started)
        return result

    def _flight_sync(
        self,
        spec: FunctionSpec,
        loc: Located,
        stamp: bytes,
        lease: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        def fill() -> Any:
            if spec.lock:
                return self._fill_locked_sync(spec, loc, stamp, lease, args, kwargs, counters)
            return self._fill_sync(spec, loc, stamp, lease, args, kwargs, counters)

        if not spec.single_flight:
            return fill()
        return self._sync_flights.run((loc.key, stamp, lease), fill)

    def _fill_sync(
        self,
        spec: FunctionSpec,
        loc: Located,
        stamp: bytes,
        lease: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        started = time.perf_counter()
        value = spec.func(*args, **kwargs)
        entry = self._encode_entry(spec, value, stamp, time.perf_counter() - started, counters)
        if entry is None:
            return value
        ttl_ms = self._ttl_ms(spec)
        try:
            stored = self._backends.sync_backend.store_if_unchanged(
                loc.key, entry, ttl_ms, lease, loc.token_keys, self._token_ttl_ms(ttl_ms)
            )
        except BackendError as exc:
            self._failed(exc, counters)
            return value
        if stored:
            counters.sets += 1
        else:
            counters.bypasses["lease_lost"] += 1
        return value

    def _fill_locked_sync(
        self,
        spec: FunctionSpec,
        loc: Located,
        stamp: bytes,
        lease: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        backend = self._backends.sync_backend
        lock_key = self._lock_key(loc, stamp)
        owner = new_token()
        try:
            acquired = backend.acquire_lock(lock_key, owner, spec.lock_timeout_ms)
        except BackendError as exc:
            self._failed(exc, counters)
            return self._fill_sync(spec, loc, stamp, lease, args, kwargs, counters)
        if acquired:
            try:
                hit = self._reread_sync(spec, loc, stamp, counters)  # look again, as above
                if isinstance(hit, _Hit):
                    return hit.value
                return self._fill_sync(spec, loc, stamp, hit, args, kwargs, counters)
            finally:
                with contextlib.suppress(BackendError):
                    backend.release_lock(lock_key, owner)
        counters.lock_waits += 1
        deadline = time.monotonic() + spec.lock_timeout_ms / 1000
        delay = 0.004
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.2)
            hit = self._reread_sync(spec, loc, stamp, counters)
            if isinstance(hit, _Hit):
                return hit.value
            lease = hit
        return self._fill_sync(spec, loc, stamp, lease, args, kwargs, counters)

    def _reread_sync(
        self, spec: FunctionSpec, loc: Located, stamp: bytes, counters: Counters
    ) -> _Hit | bytes:
        try:
            values = self._backends.sync_backend.get_many(loc.fetch)
        except BackendError as exc:
            self._failed(exc, counters)
            return envelope.ABSENT_LEASE
        raw = values[0]
        if raw is not None and raw.startswith(stamp):
            value = self._decode_valid(spec, raw, stamp, counters)
            if value is not _NO_VALUE:
                return _Hit(value)
        return envelope.lease_of(raw)

    def _naive_call_sync(
        self,
        spec: FunctionSpec,
        loc: Located,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        counters: Counters,
    ) -> Any:
        backend = self._backends.sync_backend
        try:
            (raw,) = backend.get_many([loc.key])
        except BackendError as exc:
            self._failed(exc, counters)
            return spec.func(*args, **kwargs)
        if raw is not None:
            value = self._decode_valid(spec, raw, b"", counters)
            if value is not _NO_VALUE:
                counters.hits += 1
                return value
        counters.misses += 1
        started = time.perf_counter()
        value = spec.func(*args, **kwargs)
        entry = self._encode_entry(spec, value, b"", time.perf_counter() - started, counters)
        if entry is not None:
            try:
                backend.set(loc.key, entry, self._ttl_ms(spec))
                counters.sets += 1
            except BackendError as exc:
                self._failed(exc, counters)
        return value

    # ================================================================== warming

    async def _warm_async(
        self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Recompute one entry and store it, whatever is cached now."""
        counters = self._counters(spec)
        loc = spec.locate(self.namespace, args, kwargs)
        backend = self._backends.async_backend
        try:
            values = await backend.get_many(loc.fetch)
            missing, fresh = self._fresh_tokens(loc, values)
            created = (
                await backend.create_tokens(loc.key, missing, fresh, _MIN_TOKEN_TTL_MS)
                if missing
                else []
            )
        except BackendError as exc:
            self._failed(exc, counters)
            return await spec.func(*args, **kwargs)
        stamp = self._merge_tokens(loc, values, missing, created)
        return await self._fill_async(
            spec, loc, stamp, envelope.lease_of(values[0]), args, kwargs, counters
        )

    def _warm_sync(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counters = self._counters(spec)
        loc = spec.locate(self.namespace, args, kwargs)
        backend = self._backends.sync_backend
        try:
            values = backend.get_many(loc.fetch)
            missing, fresh = self._fresh_tokens(loc, values)
            created = (
                backend.create_tokens(loc.key, missing, fresh, _MIN_TOKEN_TTL_MS) if missing else []
            )
        except BackendError as exc:
            self._failed(exc, counters)
            return spec.func(*args, **kwargs)
        stamp = self._merge_tokens(loc, values, missing, created)
        return self._fill_sync(
            spec, loc, stamp, envelope.lease_of(values[0]), args, kwargs, counters
        )

    # ================================================================== invalidation

    def deferred(self) -> _Scope:
        """A unit of work (``async with`` or ``with``): invalidations issued inside are applied
        when the block ends without an exception (after your commit), dropped if it raises.
        Nested blocks hand theirs to the outermost one."""
        return _Scope(self)

    def _scope(self) -> _Scope | None:
        for scope in reversed(_SCOPES.get()):
            if scope.cache is self:
                return scope
        return None

    def entry_pattern(
        self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """The exact key of one call, relative to the namespace (an ENTRY pattern)."""
        return spec.locate(self.namespace, args, kwargs).key[len(self.namespace) + 1 :]

    def key_for(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return spec.locate(self.namespace, args, kwargs).key

    def _counters(self, spec: FunctionSpec) -> Counters:
        counters = self._counters_by_prefix.get(spec.prefix_label)
        if counters is None:
            counters = self._counters_by_prefix[spec.prefix_label] = self.metrics.for_prefix(
                spec.prefix_label
            )
            # Remember the read prefix, so invalidations are counted under the reads they reach.
            self._read_prefixes[spec.prefix_label] = tuple(
                None if "{" in segment else segment
                for segment in spec.prefix_label.split(SEGMENT_SEPARATOR)
            )
        return counters

    def _labels(self, pattern: str, label: str | None) -> list[str]:
        """The stats prefixes an invalidation is counted under: the read prefixes it reaches
        (``booking:availability:2025-10-11:*`` counts for ``booking:availability:{event_date}``),
        else the pattern itself. Keeps ``stats()`` keyed by read prefixes, not by values."""
        if label is not None:
            return [label]
        plan = classify(pattern)
        if plan.kind is not PatternKind.SCAN:
            reached = [
                prefix
                for prefix, template in self._read_prefixes.items()
                if all(t is None or t == s for t, s in zip(template, plan.segments, strict=False))
            ]
            if reached:
                return reached
        return [self._label(pattern)]

    @staticmethod
    def _label(pattern: str) -> str:
        suffix = SEGMENT_SEPARATOR + WILDCARD
        return pattern[: -len(suffix)] if pattern.endswith(suffix) else pattern

    def _prepare(self, patterns: Iterable[str], label: str | None) -> list[tuple[str, str | None]]:
        out = []
        for pattern in patterns:
            classify(pattern)  # bad input fails here, at the caller, naming the problem
            out.append((pattern, label))
        return out

    async def invalidate(self, *patterns: str, label: str | None = None) -> None:
        """Invalidate keys matching each pattern (relative to the namespace). Never raises
        because the backend is down: failed invalidations are kept and replayed."""
        prepared = self._prepare(patterns, label)
        scope = self._scope()
        if scope is not None:
            scope.patterns.extend(prepared)
            return
        await self._invalidate_now_async(prepared)

    def invalidate_sync(self, *patterns: str, label: str | None = None) -> None:
        """``invalidate`` for synchronous code."""
        prepared = self._prepare(patterns, label)
        scope = self._scope()
        if scope is not None:
            scope.patterns.extend(prepared)
            return
        self._invalidate_now_sync(prepared)

    def _plan(self, pattern: str) -> PatternPlan:
        plan = classify(pattern)
        if self.strategy is Strategy.SCAN and plan.kind is PatternKind.GENERATION:
            return PatternPlan(pattern, PatternKind.SCAN, ())
        return plan

    def _record(self, pattern: str, label: str | None, applied: bool) -> None:
        kind = self._plan(pattern).kind.value
        self.metrics.record_invalidation(self._labels(pattern, label), pattern, kind, applied)

    async def _apply_async(self, pattern: str) -> None:
        plan = self._plan(pattern)
        backend = self._backends.async_backend
        if plan.kind is PatternKind.GENERATION:
            await backend.bump(
                token_key(self.namespace, plan.segments), new_token(), _MIN_TOKEN_TTL_MS
            )
        elif plan.kind is PatternKind.ENTRY:
            key = f"{self.namespace}:{pattern}"
            if self.strategy is Strategy.SCAN:
                await backend.delete([key])
            else:
                await backend.set(key, envelope.tombstone(new_token()), _MIN_TOMBSTONE_TTL_MS)
        else:
            await backend.delete_matching(f"{self.namespace}:{pattern}", self._reserved_prefix)

    def _apply_sync(self, pattern: str) -> None:
        plan = self._plan(pattern)
        backend = self._backends.sync_backend
        if plan.kind is PatternKind.GENERATION:
            backend.bump(token_key(self.namespace, plan.segments), new_token(), _MIN_TOKEN_TTL_MS)
        elif plan.kind is PatternKind.ENTRY:
            key = f"{self.namespace}:{pattern}"
            if self.strategy is Strategy.SCAN:
                backend.delete([key])
            else:
                backend.set(key, envelope.tombstone(new_token()), _MIN_TOMBSTONE_TTL_MS)
        else:
            backend.delete_matching(f"{self.namespace}:{pattern}", self._reserved_prefix)

    async def _invalidate_now_async(self, prepared: list[tuple[str, str | None]]) -> None:
        for pattern, label in prepared:
            # Order matters: anything kept from before must be applied before this one.
            if not await self._recover_async():
                self.pending.add(pattern)
                self._record(pattern, label, applied=False)
                continue
            try:
                await self._apply_async(pattern)
            except BackendError as exc:
                self._failed(exc)
                self.pending.add(pattern)
                self._record(pattern, label, applied=False)
            else:
                self._succeeded()
                self._record(pattern, label, applied=True)

    def _invalidate_now_sync(self, prepared: list[tuple[str, str | None]]) -> None:
        for pattern, label in prepared:
            if not self._recover_sync():
                self.pending.add(pattern)
                self._record(pattern, label, applied=False)
                continue
            try:
                self._apply_sync(pattern)
            except BackendError as exc:
                self._failed(exc)
                self.pending.add(pattern)
                self._record(pattern, label, applied=False)
            else:
                self._succeeded()
                self._record(pattern, label, applied=True)

    # ================================================================== recovery

    async def _recover_async(self) -> bool:
        """True when the cache may be used again: breaker lets a call through and every kept
        invalidation has been replayed, in order."""
        if not self.breaker.allow():
            return False
        if not self.pending:
            return True
        if self._replaying:
            return False  # another caller is replaying; bypass until it is done
        self._replaying = True
        try:
            batch = self.pending.snapshot()
            for pattern, _sequence in batch:
                await self._apply_async(pattern)
        except BackendError as exc:
            self._failed(exc)
            return False
        finally:
            self._replaying = False
        self.pending.discard_applied(batch)
        self._succeeded()
        self._record_replayed(batch)
        return not self.pending

    def _recover_sync(self) -> bool:
        if not self.breaker.allow():
            return False
        if not self.pending:
            return True
        if self._replaying:
            return False
        self._replaying = True
        try:
            batch = self.pending.snapshot()
            for pattern, _sequence in batch:
                self._apply_sync(pattern)
        except BackendError as exc:
            self._failed(exc)
            return False
        finally:
            self._replaying = False
        self.pending.discard_applied(batch)
        self._succeeded()
        self._record_replayed(batch)
        return not self.pending

    def _record_replayed(self, batch: list[tuple[str, int]]) -> None:
        for pattern, _sequence in batch:
            self.metrics.record_invalidation(self._labels(pattern, None), pattern, "replayed", True)

    # ================================================================== tooling

    async def inspect(self, key: str) -> dict[str, Any]:
        """Describe one stored key: state, TTL, size, stored vs current tokens, validity and
        the payload decoded as plain JSON when it is JSON. For tools, not request paths."""
        full = (
            key if key.startswith(self.namespace + SEGMENT_SEPARATOR) else f"{self.namespace}:{key}"
        )
        backend = self._backends.async_backend
        (raw,) = await backend.get_many([full])
        info: dict[str, Any] = {"key": full, "state": "absent", "ttl_ms": None, "size": 0,
                                "tokens_stored": [], "tokens_current": [], "valid": False,
                                "value": None}  # fmt: skip
        if raw is None:
            return info
        info["ttl_ms"] = await backend.ttl_ms(full)
        info["size"] = len(raw)
        if raw.startswith(envelope.TOMBSTONE_MARK):
            info["state"] = "tombstone"
            return info
        parsed = envelope.parse(raw)
        if parsed is None:
            info["state"] = "corrupt"
            return info
        info["state"] = "entry"
        relative = full[len(self.namespace) + 1 :].split(SEGMENT_SEPARATOR)
        segments = relative[: len(parsed.tokens) - 1]
        token_keys = [token_key(self.namespace, segments[:i]) for i in range(len(segments) + 1)]
        current = (await backend.get_many([full, *token_keys]))[1:]
        info["tokens_stored"] = [t.decode() for t in parsed.tokens]
        info["tokens_current"] = [t.decode() if t is not None else None for t in current]
        info["valid"] = list(parsed.tokens) == current
        info["expires_at_ms"] = parsed.expiry_ms
        info["compute_ms"] = parsed.delta_ms
        try:
            info["value"] = orjson.loads(parsed.payload)
        except orjson.JSONDecodeError:
            info["value"] = f"<{len(parsed.payload)} bytes, not JSON>"
        return info

    async def keys(self, pattern: str = "*", limit: int = 100) -> list[str]:
        """Up to ``limit`` stored keys of this namespace matching ``pattern`` (SCAN, bounded)."""
        found = await self._backends.async_backend.scan(f"{self.namespace}:{pattern}", limit)
        return [k for k in found if not k.startswith(self._reserved_prefix)]
