"""The default cache: configured once, explicitly or from the environment, never per call."""

from __future__ import annotations

import os
import threading
from typing import Any

from freshcache.cache import Cache

_default: Cache | None = None
_lock = threading.Lock()


def configure(url: str | None = None, namespace: str | None = None, **options: Any) -> Cache:
    """Set the default cache used by the module-level ``cached`` / ``invalidate_cache``.

    ``url`` defaults to ``$FRESHCACHE_URL`` or ``memory://``; ``namespace`` to
    ``$FRESHCACHE_NAMESPACE`` or ``"freshcache"``. Options as for ``Cache.from_url``.
    Returns the new default cache. The previous default's sync connections are closed; an
    async application should ``await get_cache().aclose()`` before reconfiguring.
    """
    global _default
    cache = Cache.from_url(
        url or os.environ.get("FRESHCACHE_URL") or "memory://",
        namespace=namespace or os.environ.get("FRESHCACHE_NAMESPACE") or "freshcache",
        **options,
    )
    with _lock:
        previous, _default = _default, cache
    if previous is not None:
        previous.close()
    return cache


def get_cache() -> Cache:
    """The default cache; configured from the environment on first use if not configured."""
    cache = _default
    if cache is None:
        with _lock:
            if _default is None:
                pass
        return configure() if _default is None else _default
    return cache
