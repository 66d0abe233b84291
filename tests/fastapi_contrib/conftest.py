"""Fixtures of the FastAPI route-caching tests (not named tests/fastapi: ruff would then take
``fastapi`` for a first-party package): a Cache on each backend, and an HTTP client.

Requests go over HTTP through httpx's ASGITransport (the app's real request handling, without
sockets). ``route_cache`` runs on memory:// and on the suite's real Redis, in this test's
namespace; its keys are deleted and the cache closed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from freshcache import Cache

BACKENDS = ("memory", "redis")


@pytest.fixture(params=BACKENDS)
async def route_cache(
    request: pytest.FixtureRequest, unique_namespace: str
) -> AsyncIterator[Cache]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    cache = Cache.from_url(url, namespace=unique_namespace, timeout=2.0)
    yield cache
    await cache.aclose()
    if request.param == "redis":
        client = redis.asyncio.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=f"{unique_namespace}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
