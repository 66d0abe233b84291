"""The freshcache behaviour suite runs once per backend.

``backend_url`` is parametrised over ``BACKENDS``: an id and the fixture that gives its URL
(``None``: the URL itself). A new backend is one more line here; every test that takes
``cache``, ``make_cache``, ``sync_cache`` or ``backend_url`` then runs on it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fc_helpers import Raw

from freshcache import Cache

#: backend id -> the fixture that provides its URL, or a literal URL.
BACKENDS: dict[str, str] = {
    "memory": "memory://",
    "redis": "fixture:redis_url",
    "cluster": "fixture:redis_cluster_url",
}

#: The behaviour tests check logic, not latency: a generous per-call timeout keeps a loaded CI
#: machine from turning a slow reply into a bypass that would change the exact counts asserted.
#: (The defaults are exercised by test_redis.py's concurrency test.)
SUITE_OPTIONS: dict[str, Any] = {"timeout": 2.0}


@pytest.fixture(params=list(BACKENDS))
def backend_url(request: pytest.FixtureRequest) -> str:
    source = BACKENDS[request.param]
    if source.startswith("fixture:"):
        url: str = request.getfixturevalue(source.removeprefix("fixture:"))
        return url
    return source


@pytest.fixture
def backend_id(backend_url: str) -> str:
    if backend_url.startswith("memory://"):
        return "memory"
    return "cluster" if "+cluster://" in backend_url else "redis"


@pytest.fixture
async def make_cache(
    backend_url: str, unique_namespace: str
) -> AsyncIterator[Callable[..., Cache]]:
    """``make_cache(url_suffix="", **options)``: a Cache on this backend, in this test's
    namespace; closed, and its keys deleted, after the test."""
    made: list[Cache] = []

    def make(url_suffix: str = "", **options: Any) -> Cache:
        merged = {**SUITE_OPTIONS, **options}
        cache = Cache.from_url(backend_url + url_suffix, namespace=unique_namespace, **merged)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        raw = Raw(cache)
        await raw.cleanup()
        await raw.aclose()
        await cache.aclose()


@pytest.fixture
async def cache(make_cache: Callable[..., Cache]) -> Cache:
    """``Cache.from_url(backend_url, namespace=unique_namespace)``; closed after the test."""
    return make_cache()


@pytest.fixture
async def raw(cache: Cache) -> AsyncIterator[Raw]:
    """Direct access to what ``cache``'s backend stores."""
    view = Raw(cache)
    yield view
    await view.aclose()


@pytest.fixture
def sync_cache(backend_url: str, unique_namespace: str) -> Iterator[Cache]:
    """A Cache used only from synchronous code (its sync connections), cleaned up after."""
    import redis

    cache = Cache.from_url(backend_url, namespace=unique_namespace, **SUITE_OPTIONS)
    yield cache
    cache.close()
    if backend_url.startswith("memory://"):
        return
    client: Any
    if "+cluster://" in backend_url:
        first = backend_url.split("://", 1)[1].split(",")[0].split("/")[0]
        host, port = first.rsplit(":", 1)
        client = redis.RedisCluster(host=host, port=int(port))
    else:
        client = redis.Redis.from_url(backend_url)
    for key in client.scan_iter(match=f"{unique_namespace}:*", count=1000):
        client.delete(key)
    client.close()
