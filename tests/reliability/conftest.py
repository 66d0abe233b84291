"""Fixtures for the load-and-failure tests: caches on the memory backend and on real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from freshcache import Cache


@pytest.fixture(params=["memory", "redis"])
def backend_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def cache(backend_url: str, unique_namespace: str) -> AsyncIterator[Cache]:
    # Generous timeouts: these tests are about stampedes, not about a loaded CI machine's
    # scheduling delays tripping the 50 ms default or the pool's 1 s wait (a call that
    # cannot use the cache runs the body, which would change the counts asserted).
    instance = Cache.from_url(
        backend_url, namespace=unique_namespace, timeout=5.0, pool_timeout=30.0
    )
    yield instance
    await instance.aclose()


@pytest.fixture
async def redis_cache(redis_url: str, unique_namespace: str) -> AsyncIterator[Cache]:
    instance = Cache.from_url(redis_url, namespace=unique_namespace)
    yield instance
    await instance.aclose()
