"""Fixtures of the Redis Cluster tests.

- ``cluster_view``: the session cluster (``redis_cluster_url``, see tests/conftest.py) as an
  operator sees it. Tests keep their keys under ``unique_namespace`` and never flush it.
- ``make_cache``: Caches on the session cluster in the test's namespace; closed and their keys
  deleted afterwards.
- ``private_cluster``: a cluster of this module alone, for tests that move slots or kill nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from cluster_helpers import TEST_TIMEOUT, ClusterView

from freshcache import Cache
from support import require
from support.servers import RedisCluster


def with_query(url: str, **params: Any) -> str:
    """``url`` with query parameters added (or replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({name: str(value) for name, value in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture(scope="session")
def cluster_view(redis_cluster_url: str) -> Iterator[ClusterView]:
    view = ClusterView(redis_cluster_url)
    yield view
    view.close()


@pytest.fixture
async def make_cache(
    redis_cluster_url: str, unique_namespace: str, cluster_view: ClusterView
) -> AsyncIterator[Callable[..., Cache]]:
    """``make_cache(shards=None, wait_replicas=None, **options)``: a Cache on the session
    cluster (URL options, then Cache options)."""
    made: list[Cache] = []

    def make(shards: int | None = None, wait_replicas: str | None = None, **options: Any) -> Cache:
        query = {"shards": shards, "wait_replicas": wait_replicas}
        url = with_query(redis_cluster_url, **{k: v for k, v in query.items() if v is not None})
        cache = Cache.from_url(
            url, namespace=unique_namespace, **{"timeout": TEST_TIMEOUT, **options}
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()
    cluster_view.cleanup(unique_namespace)


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[RedisCluster]:
    """A 3+3 cluster for one test module: slots may be moved and nodes killed."""
    require("redis-server", "redis-cli")
    with RedisCluster() as cluster:
        yield cluster
