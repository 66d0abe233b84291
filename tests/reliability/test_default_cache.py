"""The default cache (``get_cache`` / ``configure``) under concurrency and reconfiguration.

- ``get_cache()`` first called from two threads at once builds one cache (the race is driven
  with a barrier inside the build, not with sleeps), so no invalidation goes to an orphan.
- ``configure()`` replacing a cache keeps the invalidations the old one still had to replay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import freshcache
from freshcache import Cache, config
from support.proxy import FaultProxy
from support.servers import RedisServer


@pytest.fixture(autouse=True)
def no_default_cache() -> Iterator[None]:
    """Each test starts and ends without a default cache."""
    previous = config._default
    config._default = None
    yield
    leftover, config._default = config._default, previous
    if leftover is not None:
        leftover.close()


def test_two_threads_first_calling_get_cache_share_one_cache(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, unique_namespace: str
) -> None:
    monkeypatch.setenv("FRESHCACHE_URL", redis_url)
    monkeypatch.setenv("FRESHCACHE_NAMESPACE", unique_namespace)
    built: list[Cache] = []
    both_asked = threading.Barrier(2, timeout=5)
    real_from_url = Cache.from_url

    def counting_from_url(*args: Any, **kwargs: Any) -> Cache:
        cache = real_from_url(*args, **kwargs)
        built.append(cache)
        return cache

    monkeypatch.setattr(Cache, "from_url", counting_from_url)
    got: list[Cache] = []

    def first_call() -> None:
        both_asked.wait()  # both threads ask for the default at the same moment
        got.append(freshcache.get_cache())

    threads = [threading.Thread(target=first_call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 2
    assert got[0] is got[1]
    assert len(built) == 1, "the default cache was built twice"

    # An invalidation through the default reaches the cache every caller reads.
    calls: list[int] = []

    @freshcache.cached(ttl=300, key_prefix="shared")
    def value() -> int:
        calls.append(1)
        return len(calls)

    assert value() == 1
    assert value() == 1
    got[0].invalidate_sync("shared:*")
    assert value() == 2


def test_two_threads_racing_inside_the_build_still_build_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first builder is held inside ``Cache.from_url`` until the second thread has
    asked too: on the old code both build, and the second closes the first's cache."""
    second_asked = threading.Event()
    built: list[Cache] = []
    real_from_url = Cache.from_url

    def slow_from_url(*args: Any, **kwargs: Any) -> Cache:
        if not built:
            second_asked.wait(timeout=2)  # the other thread arrives while this one builds
        cache = real_from_url(*args, **kwargs)
        built.append(cache)
        return cache

    monkeypatch.setattr(Cache, "from_url", slow_from_url)
    got: list[Cache] = []
    first = threading.Thread(target=lambda: got.append(freshcache.get_cache()))
    first.start()

    def second_call() -> None:
        second_asked.set()
        got.append(freshcache.get_cache())

    second = threading.Thread(target=second_call)
    second.start()
    first.join()
    second.join()
    assert len(built) == 1
    assert got[0] is got[1]


async def test_configure_keeps_the_old_caches_pending_invalidations(
    private_redis: RedisServer, fault_proxy: Callable[[str, int], FaultProxy]
) -> None:
    """Redis unreachable: an invalidation is kept by the default cache. Reconfiguring (same
    URL and namespace) hands it to the new cache, which replays it when Redis is back: the
    old value is never served again."""
    proxy = fault_proxy(*private_redis.address)
    old = freshcache.configure(proxy.url, "reconf", timeout=1.0)
    version = [1]

    @freshcache.cached(ttl=300, key_prefix="item")
    async def item() -> int:
        return version[0]

    assert await item() == 1
    assert await item() == 1  # cached
    proxy.set_mode("refuse")
    version[0] = 2
    await old.invalidate("item:*")
    assert old.health()["pending_invalidations"] == 1

    new = freshcache.configure(proxy.url, "reconf", timeout=1.0)
    assert new is not old
    assert new.health()["pending_invalidations"] == 1
    proxy.set_mode("pass")
    assert await item() == 2  # replayed before the read: never the stale 1
    assert new.health()["pending_invalidations"] == 0
    await new.aclose()
