"""``BackendSet``: the URL's two faces, and ``use()``, the seam benchmarks stub the I/O with."""

from __future__ import annotations

from freshcache import Cache
from freshcache.backends import EntryKeys
from freshcache.backends.memory import AsyncMemoryBackend, MemoryStore


async def test_use_puts_other_faces_in_place_and_returns_the_previous_ones() -> None:
    cache = Cache.from_url("memory://", namespace="swap")
    original_async, original_sync = cache.backends.async_backend, cache.backends.sync_backend
    store = MemoryStore()
    previous = cache.backends.use(async_backend=AsyncMemoryBackend(store), sync_backend=store)
    assert previous == (original_async, original_sync)

    @cache.cached(ttl=60, key_prefix="a")
    async def read() -> int:
        return 1

    assert await read() == 1
    stored = await cache.backends.async_backend.scan("swap:*", 10)
    assert stored  # the entry and its tokens went to the substitute store
    assert store.get_many(EntryKeys.of(read.key_for()))[0] is not None
    assert await original_async.scan("swap:*", 10) == []  # and not to the URL's own

    cache.backends.use(async_backend=original_async, sync_backend=original_sync)
    assert cache.backends.async_backend is original_async
