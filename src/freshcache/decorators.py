"""``@cached`` and ``@invalidate_cache``, for async and sync functions and methods.

The module-level decorators bind to the default cache lazily (at call time), so they can be
applied at import, before ``freshcache.configure()``; with ``cache=`` they bind to that cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from freshcache._engine import wrappers
from freshcache._engine.spec import Seconds
from freshcache._engine.wrappers import (
    AsyncCachedFunction,
    BoundAsyncCachedFunction,
    BoundCachedFunction,
    BoundSyncCachedFunction,
    CachedDecorator,
    CachedFunction,
    CacheRef,
    PatternSource,
    SyncCachedFunction,
)
from freshcache.cache import Cache
from freshcache.config import get_cache

__all__ = [
    "AsyncCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "BoundSyncCachedFunction",
    "CachedDecorator",
    "CachedFunction",
    "SyncCachedFunction",
    "cached",
    "invalidate_cache",
]

P = ParamSpec("P")
R = TypeVar("R")


def _reference(cache: Cache | None) -> CacheRef:
    return get_cache if cache is None else (lambda: cache)


def cached(
    ttl: Seconds | None = None,
    key_prefix: str | None = None,
    *,
    exclude: Sequence[str] = (),
    key: Callable[..., object] | None = None,
    version: str | int | None = None,
    serializer: str = "json",
    signing_key: bytes | str | None = None,
    lock: bool = False,
    lock_timeout: Seconds = 5.0,
    early_refresh: bool = False,
    early_refresh_beta: float = 1.0,
    single_flight: bool = True,
    condition: Callable[[Any], object] | None = None,
    near: bool = True,
    cache: Cache | None = None,
) -> CachedDecorator:
    """Cache a function's result under ``{namespace}:{key_prefix}:{qualname}:{args_hash}``.

    - ``ttl``: seconds (int or float), a ``timedelta`` or a string (``"90s"``, ``"5m"``,
      ``"1h"``, ``"1d"``, ``"1h30m"``); the cache's ``default_ttl`` when omitted.
    - ``key_prefix``: segments separated by ``:``; may contain ``{param}`` / ``{param.attr}``
      templates filled from the call's arguments (escaped). Defaults to the module name.
    - ``exclude``: parameters left out of the key (DB sessions, requests); ``self``/``cls``
      are always left out.
    - ``key``: a callable with the function's parameters returning the last key segment,
      instead of the hash of the arguments.
    - ``version``: an extra segment, so a new value format never reads old entries.
    - ``serializer``: ``"json"`` (typed by the return annotation) or ``"pickle"``, which
      requires ``signing_key`` (HMAC-SHA256; unsigned or tampered entries are misses).
    - ``lock``: a distributed lock so that one caller across processes computes a missing
      value; the others wait (backoff, at most ``lock_timeout``), then compute themselves.
    - ``early_refresh``: probabilistic early recomputation (XFetch) of hot entries.
    - ``single_flight``: concurrent misses in one process share one computation (default).
    - ``condition``: a callable on the result; when it returns false the result is returned
      but not stored (counted as the bypass reason ``"condition"``), e.g.
      ``condition=lambda r: r is not None``.
    - ``near``: ``False`` keeps this function out of the cache's near cache (``near_lease``).
    """
    return wrappers.cached(
        ttl,
        key_prefix,
        exclude=exclude,
        key=key,
        version=version,
        serializer=serializer,
        signing_key=signing_key,
        lock=lock,
        lock_timeout=lock_timeout,
        early_refresh=early_refresh,
        early_refresh_beta=early_refresh_beta,
        single_flight=single_flight,
        condition=condition,
        near=near,
        cache_ref=_reference(cache),
    )


def invalidate_cache(
    *patterns: PatternSource,
    cache: Cache | None = None,
    rewarm: Sequence[Callable[..., Any]] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """After the decorated write returns without raising, invalidate ``patterns``.

    Each pattern is a string (``"booking:*"``, or a template over the arguments and
    ``result``: ``"booking:availability:{result.event_date}:*"``, values escaped) or a callable
    ``(result, **arguments) -> pattern | [patterns]``. Inside ``cache.deferred()`` (a unit of
    work) they are applied when it commits. ``rewarm``: callables ``(result, **arguments)``
    run after the invalidation, e.g. ``lambda result, **kw: get_stats.warm()``.
    """
    return wrappers.invalidate_cache(*patterns, cache_ref=_reference(cache), rewarm=rewarm)
