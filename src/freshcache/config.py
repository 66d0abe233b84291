"""The default cache: configured once, explicitly or from the environment, never per call."""

from __future__ import annotations

import os
import threading
from typing import Any

from freshcache.cache import Cache

_default: Cache | None = None
# Held while a default cache is built and installed: two threads that both find no default
# must not both build one (the second would close the first under the callers using it).
_lock = threading.Lock()


def configure(url: str | None = None, namespace: str | None = None, **options: Any) -> Cache:
    """Set the default cache used by the module-level ``cached`` / ``invalidate_cache``.

    ``url`` defaults to ``$FRESHCACHE_URL`` or ``memory://``; ``namespace`` to
    ``$FRESHCACHE_NAMESPACE`` or ``"freshcache"``. Options as for ``Cache.from_url``.
    Returns the new default cache. The previous default's connections are closed; the
    invalidations it still kept for replay (its backend was unreachable) move to the new
    cache when both use the same URL and namespace, so none is lost. An async application
    should ``await get_cache().aclose()`` before reconfiguring.
    """
    with _lock:
        return _install(_build(url, namespace, options))


def get_cache() -> Cache:
    """The default cache; configured from the environment on first use if not configured.
    Built once, under the lock, however many threads ask at the same moment."""
    cache = _default
    if cache is not None:
        return cache
    with _lock:
        return _default if _default is not None else _install(_build(None, None, {}))


def _build(url: str | None, namespace: str | None, options: dict[str, Any]) -> Cache:
    # Building does no I/O (connections open on first use): cheap enough to hold the lock.
    return Cache.from_url(
        url or os.environ.get("FRESHCACHE_URL") or "memory://",
        namespace=namespace or os.environ.get("FRESHCACHE_NAMESPACE") or "freshcache",
        **options,
    )


def _install(cache: Cache) -> Cache:
    """Make ``cache`` the default (the caller holds ``_lock``); retire the previous one."""
    global _default
    previous, _default = _default, cache
    if previous is not None:
        if (previous.url, previous.namespace) == (cache.url, cache.namespace):
            for pattern, _sequence in previous.pending.snapshot():
                cache.pending.add(pattern)
        previous.close()
    return cache
