"""The cache's life inside a FastAPI application: configured at startup, closed at shutdown."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from fastapi import FastAPI

import freshcache
from freshcache import Cache

Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Any]]


def cache_lifespan(
    url: str | None = None,
    namespace: str | None = None,
    *,
    cache: Cache | None = None,
    then: Lifespan | None = None,
    **options: Any,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Mapping[str, Any] | None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that owns the cache.

    At startup: ``cache``, or else ``freshcache.configure(url, namespace, **options)`` (the
    default cache that module-level ``@cached`` and ``@cached_route`` use; ``url`` defaults to
    ``$FRESHCACHE_URL``). It is put on ``app.state.freshcache``. Then the application's own
    lifespan ``then`` runs inside it, if given. At shutdown: ``await cache.aclose()``, which
    also flushes invalidations still pending, even if startup or shutdown failed.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any] | None]:
        active = cache if cache is not None else freshcache.configure(url, namespace, **options)
        app.state.freshcache = active
        try:
            if then is None:
                yield None
            else:
                async with then(app) as state:
                    yield state
        finally:
            await active.aclose()

    return lifespan
