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
import contextvars
import dataclasses
import enum
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import orjson

from freshcache import entry as envelope
from freshcache import flows
from freshcache.backends import BackendError, ConnectionOptions, open_backends
from freshcache.codecs import DecodeError, EncodeError, ValueTooLarge, encode_checked
from freshcache.keys import SEGMENT_SEPARATOR, WILDCARD, encode_surrogates
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


class Cache:
    """A cache on one backend URL and namespace. See ``Cache.from_url`` for the options."""

    NO_VALUE: Any = _NO_VALUE

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
        return max(flows.MIN_TOKEN_TTL_MS, 2 * ttl_ms)

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
            # Size first, then the type-strict round trip: an oversize value is encoded once.
            payload = encode_checked(
                spec.codec, value, max_bytes=self.max_value_bytes, verify=self.verify_encoding
            )
        except ValueTooLarge:
            counters.errors["oversize"] += 1
            return None
        except EncodeError as exc:
            counters.errors["encode"] += 1
            log.debug("freshcache: %s returned a value that is not cached: %s", spec.qualname, exc)
            return None
        ttl_ms = self._ttl_ms(spec)
        return envelope.pack(stamp, int(elapsed * 1000), int(time.time() * 1000) + ttl_ms, payload)

    def _refresh_due(
        self, spec: FunctionSpec, values: list[bytes | None], stamp: bytes | None
    ) -> bool:
        """Should this caller recompute a valid entry early (XFetch)? Costs nothing unless the
        function asked for early refresh."""
        if not spec.early_refresh:
            return False
        raw = values[0]
        assert raw is not None
        assert stamp is not None
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

    # ================================================================== drivers

    # The hit path is written out for each driver: it is the one place where a generator's
    # microsecond would show. Everything after a read that was not a plain hit is a flow.

    async def _call_async(
        self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        counters = self._counters(spec)
        if (
            self.pending or self.breaker.state is not BreakerState.CLOSED
        ) and not await self._drive_async(flows.recover(self)):
            counters.bypasses[self._bypass_reason()] += 1
            return await spec.func(*args, **kwargs)
        loc = spec.locate(self.namespace, args, kwargs)
        if self.strategy is Strategy.SCAN:
            return await self._drive_async(
                flows.naive(self, spec, loc, counters), spec, args, kwargs
            )
        started = time.perf_counter()
        try:
            values = await self._backends.async_backend.get_many(loc.fetch)
        except BackendError as exc:
            self._failed(exc, counters)
            return await spec.func(*args, **kwargs)
        if self._last_error is not None or self.breaker.state is not BreakerState.CLOSED:
            self._succeeded()
        value, stamp = self._judge(spec, values, counters)
        if value is not _NO_VALUE and not (
            spec.early_refresh and self._refresh_due(spec, values, stamp)
        ):
            counters.hits += 1
            counters.observe(time.perf_counter() - started)
            return value
        flow = flows.after_read(self, spec, loc, values, value, stamp, counters)
        result = await self._drive_async(flow, spec, args, kwargs)
        counters.observe(time.perf_counter() - started)
        return result

    def _call_sync(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counters = self._counters(spec)
        if (self.pending or self.breaker.state is not BreakerState.CLOSED) and not self._drive_sync(
            flows.recover(self)
        ):
            counters.bypasses[self._bypass_reason()] += 1
            return spec.func(*args, **kwargs)
        loc = spec.locate(self.namespace, args, kwargs)
        if self.strategy is Strategy.SCAN:
            return self._drive_sync(flows.naive(self, spec, loc, counters), spec, args, kwargs)
        started = time.perf_counter()
        try:
            values = self._backends.sync_backend.get_many(loc.fetch)
        except BackendError as exc:
            self._failed(exc, counters)
            return spec.func(*args, **kwargs)
        if self._last_error is not None or self.breaker.state is not BreakerState.CLOSED:
            self._succeeded()
        value, stamp = self._judge(spec, values, counters)
        if value is not _NO_VALUE and not (
            spec.early_refresh and self._refresh_due(spec, values, stamp)
        ):
            counters.hits += 1
            counters.observe(time.perf_counter() - started)
            return value
        flow = flows.after_read(self, spec, loc, values, value, stamp, counters)
        result = self._drive_sync(flow, spec, args, kwargs)
        counters.observe(time.perf_counter() - started)
        return result

    async def _drive_async(
        self,
        flow: flows.Flow[T],
        spec: FunctionSpec | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> T:
        """Run a flow for an async caller: each operation awaited, failures thrown back in."""
        backend = self._backends.async_backend
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, error = None, None
            try:
                if isinstance(op, flows.Call):
                    reply = await getattr(backend, op.method)(*op.args)
                elif isinstance(op, flows.Compute):
                    assert spec is not None
                    reply = await spec.func(*args, **(kwargs or {}))
                elif isinstance(op, flows.Shared):
                    pool = self._async_flights if op.pool == "value" else self._async_token_flights
                    # A joiner's flow is created but never started: that costs nothing.
                    shared = functools.partial(self._drive_async, op.make(), spec, args, kwargs)
                    reply = await pool.run(op.key, shared)
                elif isinstance(op, flows.Sleep):
                    await asyncio.sleep(op.seconds)
                else:
                    reply = self._async_flights.in_flight(op.key)
            except BaseException as exc:  # the flow decides; what it does not catch rises
                error = exc

    def _drive_sync(
        self,
        flow: flows.Flow[T],
        spec: FunctionSpec | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> T:
        """Run a flow for a sync caller."""
        backend = self._backends.sync_backend
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, error = None, None
            try:
                if isinstance(op, flows.Call):
                    reply = getattr(backend, op.method)(*op.args)
                elif isinstance(op, flows.Compute):
                    assert spec is not None
                    reply = spec.func(*args, **(kwargs or {}))
                elif isinstance(op, flows.Shared):
                    pool = self._sync_flights if op.pool == "value" else self._sync_token_flights
                    shared_sync = functools.partial(self._drive_sync, op.make(), spec, args, kwargs)
                    reply = pool.run(op.key, shared_sync)
                elif isinstance(op, flows.Sleep):
                    time.sleep(op.seconds)
                else:
                    reply = self._sync_flights.in_flight(op.key)
            except BaseException as exc:
                error = exc

    # ================================================================== warming

    async def _warm_async(
        self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        loc = spec.locate(self.namespace, args, kwargs)
        flow = flows.warm(self, spec, loc, self._counters(spec))
        return await self._drive_async(flow, spec, args, kwargs)

    def _warm_sync(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loc = spec.locate(self.namespace, args, kwargs)
        return self._drive_sync(
            flows.warm(self, spec, loc, self._counters(spec)), spec, args, kwargs
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
        for written in patterns:
            # A lone surrogate cannot be sent to Redis: encode it as keys.escape() does.
            pattern = encode_surrogates(written) if isinstance(written, str) else written
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

    def _record(
        self, pattern: str, label: str | None, applied: bool, kind: str | None = None
    ) -> None:
        kind = kind or self._plan(pattern).kind.value
        self.metrics.record_invalidation(self._labels(pattern, label), pattern, kind, applied)

    async def _invalidate_now_async(self, prepared: list[tuple[str, str | None]]) -> None:
        await self._drive_async(flows.invalidate_now(self, prepared))

    def _invalidate_now_sync(self, prepared: list[tuple[str, str | None]]) -> None:
        self._drive_sync(flows.invalidate_now(self, prepared))

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
