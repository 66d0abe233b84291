"""``Cache``: one backend URL and namespace, the public face of the engine.

The paths themselves (read, store, invalidate) live in ``freshcache._engine``; ``Cache``
validates its options, builds the engine's parts, and offers the operations users call:
decorators bound to it, ``invalidate``, ``deferred`` units of work, ``stats``, ``health``,
``ping``, and the tools ``inspect`` and ``keys``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import orjson

from freshcache import entry as envelope
from freshcache._engine import shadow, wrappers
from freshcache._engine.bypass import Bypass
from freshcache._engine.engine import Engine
from freshcache._engine.health import Health
from freshcache._engine.invalidation import Strategy
from freshcache._engine.keyspace import KeySpace
from freshcache._engine.ledger import Ledger
from freshcache._engine.near import NearCache, split_url_options
from freshcache._engine.rules import NO_VALUE, EntryRules
from freshcache._engine.scope import Scope
from freshcache._engine.spec import FunctionSpec, Seconds, to_ms
from freshcache._engine.values import Values
from freshcache.backends import (
    BackendError,
    BackendSet,
    ConnectionOptions,
    EntryKeys,
    open_backends,
)
from freshcache.key_listing import KeyListing, scan_budget, user_keys
from freshcache.metrics import Metrics, PrefixStats
from freshcache.resilience import CircuitBreaker, PendingInvalidations
from freshcache.stampede import default_rand

__all__ = ["Cache", "Strategy"]


class Cache:
    """A cache on one backend URL and namespace. See ``Cache.from_url`` for the options."""

    NO_VALUE: Any = NO_VALUE

    def __init__(
        self,
        url: str = "memory://",
        *,
        namespace: str = "freshcache",
        timeout: float = 0.05,
        pool_timeout: float = 1.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        breaker_cooldown_min: float = 0.1,
        max_value_bytes: int = 1024 * 1024,
        max_connections: int = 50,
        default_ttl: Seconds = 300,
        strategy: Literal["generation", "scan"] = "generation",
        max_pending_invalidations: int = 1000,
        verify_encoding: bool = True,
        verify_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        near_lease: float | None = None,
        near_max_entries: int | None = None,
        near_max_bytes: int | None = None,
        near_max_age: float | None = None,
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
        url, from_url = split_url_options(url) if isinstance(url, str) else (url, {})
        near = _near_cache(
            url,
            near_lease if near_lease is not None else from_url.get("near_lease", 0.0),
            near_max_entries
            if near_max_entries is not None
            else int(from_url.get("near_max_entries", 10_000)),
            near_max_bytes
            if near_max_bytes is not None
            else int(from_url.get("near_max_bytes", 64 * 1024 * 1024)),
            near_max_age if near_max_age is not None else from_url.get("near_max_age"),
        )
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        backend_url, rate_in_url = shadow.split_verify_rate(url)
        rate = verify_rate if verify_rate is not None else rate_in_url
        self.verify_rate = shadow.check_rate(rate)
        self.backends: BackendSet = open_backends(
            backend_url,
            ConnectionOptions(float(timeout), max_connections, float(pool_timeout), clock),
        )
        self.metrics = Metrics(wall_clock=wall_clock)
        self.breaker = CircuitBreaker(
            breaker_threshold, breaker_cooldown, clock, cooldown_min=breaker_cooldown_min
        )
        self.pending = PendingInvalidations(max_pending_invalidations)
        rules = EntryRules(
            default_ttl_ms=to_ms(default_ttl, "default_ttl"),
            max_value_bytes=max_value_bytes,
            verify_encoding=verify_encoding,
            wall_clock=wall_clock,
            rand=default_rand,
        )
        self.engine = Engine(
            keys=KeySpace(namespace),
            backends=self.backends,
            strategy=self.strategy,
            rules=rules,
            health=Health(self.backends.kind, self.breaker, self.pending, clock),
            ledger=Ledger(self.metrics),
            shadow=shadow.ShadowReads(self.verify_rate, self.backends)
            if self.verify_rate
            else None,
            near=near,
        )
        self.values = Values(self.engine)

    @classmethod
    def from_url(cls, url: str, namespace: str = "freshcache", **options: Any) -> Cache:
        """Build a cache. Options: ``timeout`` (seconds per backend call, default 0.05),
        ``pool_timeout`` (wait for a free pooled connection, default 1.0),
        ``breaker_threshold`` (consecutive failures that open the breaker, default 5),
        ``breaker_cooldown_min`` (seconds before the first probe after the breaker opens,
        default 0.1; each failed probe doubles it), ``breaker_cooldown`` (the longest wait
        between probes, default 5), ``max_value_bytes`` (1 MiB),
        ``max_connections`` (50), ``default_ttl`` (300 s; like every duration here, seconds, a
        ``timedelta`` or a string such as ``"5m"``, ``"1h30m"``), ``strategy`` ("generation" or the
        naive "scan"), ``max_pending_invalidations`` (1000; beyond it they collapse into one
        invalidation of the namespace), ``verify_encoding`` (decode once before storing),
        ``verify_rate`` (the fraction of hits recomputed in the background and compared with
        the cached value, counted as ``shadow_checks`` / ``stale_hits``; default 0, off; also
        ``?verify_rate=0.001`` in the URL; see docs/shadow-reads.md),
        ``clock`` (monotonic seconds: TTLs of memory://, breaker, lock waits, latencies) and
        ``wall_clock`` (epoch seconds: the expiry stamped into entries).

        The near cache (off by default): ``near_lease`` (seconds an entry validated by Redis
        is served from this process without a round trip; invalidations then wait that long
        after Redis acknowledged them, so the consistency promise holds across processes),
        ``near_max_entries`` (10,000) and ``near_max_bytes`` (64 MiB), and ``near_max_age``
        (standalone Redis: how long an entry may be kept past its lease while this process's
        heartbeats through Redis show no invalidation was missed; default 1 s, 0 for plain
        leases; Redis Cluster: plain leases), also accepted as URL query parameters
        (``redis://host/0?near_lease=0.05``); see docs/near-cache.md."""
        return cls(url, namespace=namespace, **options)

    def __repr__(self) -> str:
        return f"Cache({self.url!r}, namespace={self.namespace!r})"

    @property
    def backend_kind(self) -> str:
        return self.backends.kind

    @property
    def max_value_bytes(self) -> int:
        return self.engine.rules.max_value_bytes

    @property
    def default_ttl_ms(self) -> int:
        return self.engine.rules.default_ttl_ms

    @property
    def verify_encoding(self) -> bool:
        return self.engine.rules.verify_encoding

    # ------------------------------------------------------------------ decorators (bound)

    def cached(
        self, ttl: Seconds | None = None, key_prefix: str | None = None, **options: Any
    ) -> wrappers.CachedDecorator:
        """``@cache.cached(...)``: like ``freshcache.cached`` but bound to this cache."""
        return wrappers.cached(ttl, key_prefix, cache_ref=lambda: self, **options)

    def invalidate_cache(self, *patterns: Any, **options: Any) -> Any:
        """``@cache.invalidate_cache(...)``: like ``freshcache.invalidate_cache``, bound here."""
        return wrappers.invalidate_cache(*patterns, cache_ref=lambda: self, **options)

    # ------------------------------------------------------------------ single values

    async def get(
        self, key: str, /, *, default: Any = NO_VALUE, type: Any = None, **fields: Any
    ) -> Any:
        """The value stored by ``set`` at ``key``, or ``default`` (``Cache.NO_VALUE`` unless
        given) on a miss, a stale entry, or a backend that is unavailable.

        ``key`` is relative to the namespace, segments separated by ``:``; it may contain
        ``{name}`` fields filled (escaped) from keyword arguments:
        ``await cache.get("user:{user_id}:avatar", user_id=42)``. The entry is checked against
        the tokens of every prefix of the key, so ``invalidate("user:*")`` drops it too.
        ``type``: decode the JSON into this type (a pydantic model, a dataclass,
        ``list[int]``...); plain JSON values when omitted.
        """
        located = self.values.locate(key, fields, "cache.get")
        codec = self.values.decoder(type, "cache.get")
        value = await self.engine.drivers.run_async(self.values.read(located, codec))
        return default if value is NO_VALUE else value

    def get_sync(
        self, key: str, /, *, default: Any = NO_VALUE, type: Any = None, **fields: Any
    ) -> Any:
        """``get`` for synchronous code."""
        located = self.values.locate(key, fields, "cache.get_sync")
        codec = self.values.decoder(type, "cache.get_sync")
        value = self.engine.drivers.run_sync(self.values.read(located, codec))
        return default if value is NO_VALUE else value

    async def set(
        self,
        key: str,
        value: Any,
        /,
        *,
        ttl: Seconds | None = None,
        type: Any = None,
        **fields: Any,
    ) -> bool:
        """Store ``value`` (as JSON) at ``key`` (as for ``get``) for ``ttl`` (seconds, a
        timedelta or ``"5m"``; the cache's ``default_ttl`` when omitted). ``type``: the type
        to encode by (default: the value's own type; give it for ``list[Model]``). Returns
        False, without raising, when the backend is unavailable; a value that cannot be
        stored (not JSON, over ``max_value_bytes``) raises ``TypeError`` / ``ValueError``."""
        located = self.values.locate(key, fields, "cache.set")
        payload, ttl_ms = self.values.encode(value, type, ttl)
        return await self.engine.drivers.run_async(self.values.write(located, payload, ttl_ms))

    def set_sync(
        self,
        key: str,
        value: Any,
        /,
        *,
        ttl: Seconds | None = None,
        type: Any = None,
        **fields: Any,
    ) -> bool:
        """``set`` for synchronous code."""
        located = self.values.locate(key, fields, "cache.set_sync")
        payload, ttl_ms = self.values.encode(value, type, ttl)
        return self.engine.drivers.run_sync(self.values.write(located, payload, ttl_ms))

    async def delete(self, key: str, /, **fields: Any) -> None:
        """Drop the value at ``key`` (as for ``get``): an exact-key invalidation (the
        value's own token is replaced, so a reader that loaded before it cannot store), kept
        and replayed if the backend is down, deferred inside ``cache.deferred()`` like any
        invalidation."""
        located = self.values.locate(key, fields, "cache.delete")
        await self.engine.invalidate((located.loc.relative,), label=located.label)

    def delete_sync(self, key: str, /, **fields: Any) -> None:
        """``delete`` for synchronous code."""
        located = self.values.locate(key, fields, "cache.delete_sync")
        self.engine.invalidate_sync((located.loc.relative,), label=located.label)

    # ------------------------------------------------------------------ observability

    def stats(self) -> Mapping[str, PrefixStats]:
        """Per key prefix (as written in the decorator): hits, misses, stale, sets,
        invalidations by kind, errors, bypasses, latency, and ``hit_ratio``; with the near
        cache on, its hits (also counted in ``hits``), background revalidations, drops by push
        from other processes, and the invalidations' commit-wait (``near_wait_*``)."""
        snapshot = self.metrics.snapshot()
        near = self.engine.near
        if near is None:
            return snapshot
        by_prefix = near.snapshot()
        return MappingProxyType(
            {
                prefix: stats
                if (n := by_prefix.get(prefix)) is None
                else dataclasses.replace(
                    stats,
                    near_hits=n.hits,
                    near_revalidations=n.revalidations,
                    near_push_drops=n.push_drops,
                    near_wait_count=n.wait_count,
                    near_wait_sum=n.wait_sum,
                    near_wait_buckets=tuple(n.wait_buckets),
                )
                for prefix, stats in snapshot.items()
            }
        )

    def health(self) -> dict[str, Any]:
        """What this process knows without asking the backend (no I/O). ``status`` is
        ``"degraded"`` while invalidations are kept (not yet applied), while the server refuses
        writes, or before a reconnected server's identity has been checked; else ``"ok"``."""
        health = self.engine.health
        return {
            "backend": self.backend_kind,
            "namespace": self.namespace,
            "status": "degraded" if health.degraded else "ok",
            "reachable": health.reachable,
            "breaker": self.breaker.state.value,
            "pending_invalidations": len(self.pending),
            "writes_refused": health.writes_refused,
            "server_verified": not health.unverified,
            "new_generations": health.new_generations,
            "last_error": health.last_error,
        }

    async def ping(self) -> bool:
        """Ask the backend; the answer also feeds the breaker."""
        health = self.engine.health
        try:
            await asyncio.wait_for(self.backends.async_backend.ping(), self.timeout * 4)
        except (BackendError, TimeoutError) as exc:
            health.failed(exc if isinstance(exc, BackendError) else BackendError("timeout", "ping"))
            return False
        health.succeeded()
        return True

    def recent_invalidations(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(e) for e in self.metrics.recent_invalidations()]

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self, flush_timeout: float = 2.0) -> list[str]:
        """Apply the invalidations still kept (trying for at most ``flush_timeout`` seconds),
        then close the connections. Returns the patterns that could not be applied (also
        logged as an error): other processes may read those stale until their TTL."""
        left = await self.engine.flush_async(flush_timeout)
        if self.engine.shadow is not None:
            self.engine.shadow.close()
        if self.engine.near_io is not None:
            self.engine.near_io.close()
        await self.backends.aclose()
        return left

    def close(self, flush_timeout: float = 2.0) -> list[str]:
        """``aclose`` for synchronous code."""
        left = self.engine.flush_sync(flush_timeout)
        if self.engine.shadow is not None:
            self.engine.shadow.close()
        if self.engine.near_io is not None:
            self.engine.near_io.close()
        self.backends.close()
        return left

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def bypass(self) -> Bypass:
        """A block (``with`` or ``async with``) inside which this cache's decorated reads run
        the function and store nothing (counted as the bypass reason ``"bypass"``);
        invalidations inside it still apply. Task-local: other tasks and threads keep using
        the cache. ``with cache.bypass(): fresh = get_stats()``."""
        return self.engine.bypass()

    # ------------------------------------------------------------------ invalidation

    def deferred(self) -> Scope:
        """A unit of work (``async with`` or ``with``): invalidations issued inside are applied
        when the block ends without an exception (after your commit), dropped if it raises.
        Nested blocks hand theirs to the outermost one."""
        return self.engine.deferred()

    async def invalidate(self, *patterns: str, label: str | None = None) -> None:
        """Invalidate keys matching each pattern (relative to the namespace). Never raises
        because the backend is down: failed invalidations are kept and replayed."""
        await self.engine.invalidate(patterns, label)

    def invalidate_sync(self, *patterns: str, label: str | None = None) -> None:
        """``invalidate`` for synchronous code."""
        self.engine.invalidate_sync(patterns, label)

    def entry_pattern(
        self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """The exact key of one call, relative to the namespace (an ENTRY pattern)."""
        return self.engine.entry_pattern(spec, args, kwargs)

    def key_for(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return self.engine.locate(spec, args, kwargs).entry

    # ------------------------------------------------------------------ tooling

    async def inspect(self, key: str) -> dict[str, Any]:
        """Describe one stored key: state, TTL, size, stored vs current tokens, validity and
        the payload decoded as plain JSON when it is JSON. For tools, not request paths."""
        keys = self.engine.keys
        full = keys.absolute(key)
        backend = self.backends.async_backend
        (raw,) = await backend.get_many(EntryKeys.of(full))
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
        current = (await backend.get_many(keys.stored_entry(full, len(parsed.tokens))))[1:]
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
        """Up to ``limit`` stored user keys of this namespace matching ``pattern`` (SCAN,
        bounded). ``list_keys`` also says whether the list is complete."""
        return (await self.list_keys(pattern, limit)).keys

    async def list_keys(
        self, pattern: str = "*", limit: int = 100, *, scan_limit: int | None = None
    ) -> KeyListing:
        """Up to ``limit`` user keys of this namespace matching ``pattern``, and whether that
        is all of them. freshcache's own keys are left out before ``limit`` applies; the SCAN
        examines at most ``scan_limit`` stored keys (default: 10 per key asked for, at least
        10,000), so a keyspace crowded with token keys yields a listing marked incomplete
        rather than an unbounded scan."""
        budget = scan_budget(limit, scan_limit)
        space = self.engine.keys
        asked = budget + 1  # one more than the budget: "did SCAN stop before its end?"
        found = await self.backends.async_backend.scan(space.key(pattern), asked)
        return user_keys(found, space.reserved_prefix, limit, budget, asked)


#: How long a near entry may be kept past its lease on standalone Redis, by default.
NEAR_MAX_AGE = 1.0


def _near_cache(
    url: str, lease: float, max_entries: int, max_bytes: int, max_age: float | None
) -> NearCache | None:
    if isinstance(lease, bool) or not isinstance(lease, int | float) or lease < 0:
        raise ValueError("freshcache: near_lease must be a number of seconds >= 0 (0: off)")
    if not lease:
        return None
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        raise ValueError(
            "freshcache: near_lease is for a remote backend; memory:// is already in-process"
        )
    if scheme.endswith("+cluster"):
        # Pub/sub messages of a cluster travel between nodes: a heartbeat may come back before
        # an invalidation published on another node, so it proves nothing there.
        if max_age:
            raise ValueError(
                "freshcache: near_max_age needs standalone Redis; Redis Cluster uses plain leases"
            )
        max_age = 0.0
    return NearCache(
        float(lease), max_entries, max_bytes, max_age=NEAR_MAX_AGE if max_age is None else max_age
    )
