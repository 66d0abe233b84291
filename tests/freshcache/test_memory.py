"""The memory backend: TTLs with an injected clock (time is moved, never
slept), bounds by entries and bytes with LRU eviction, thread safety."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fc_helpers import Calls, FakeClock

from freshcache import Cache
from freshcache.backends.base import EntryKeys
from freshcache.backends.memory import MemoryStore, glob_to_regex


def store_of(cache: Cache) -> MemoryStore:
    store = cache.backends.sync_backend
    assert isinstance(store, MemoryStore)
    return store


# -- TTLs -------------------------------------------------------------------------------------


async def test_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    cache = Cache.from_url("memory://", namespace="ttl", clock=clock)
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="booking:availability")
    async def slots(day: str) -> int:
        return calls(day)

    assert await slots("sat") == 1
    clock.advance(59.9)
    assert await slots("sat") == 1  # still fresh
    clock.advance(0.2)
    assert await slots("sat") == 2  # expired: recomputed
    clock.advance(30)
    assert await slots("sat") == 2
    stats = cache.stats()["booking:availability"]
    assert (stats.hits, stats.misses, stats.stale) == (2, 2, 0)


async def test_default_ttl_applies_when_none_is_given() -> None:
    clock = FakeClock()
    cache = Cache.from_url("memory://", namespace="ttl", clock=clock, default_ttl=10)
    calls = Calls()

    @cache.cached(key_prefix="p")
    async def value() -> int:
        return calls()

    assert await value() == 1
    clock.advance(9)
    assert await value() == 1
    clock.advance(2)
    assert await value() == 2


async def test_tokens_outlive_entries_and_tombstones_expire() -> None:
    clock = FakeClock()
    cache = Cache.from_url("memory://", namespace="ttl", clock=clock)
    store = store_of(cache)
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="p")
    async def value(n: int) -> int:
        return calls(n)

    await value(1)
    await value.invalidate(1)
    key = value.key_for(1)
    tombstone_ttl = store.ttl_ms(key)
    assert tombstone_ttl is not None
    assert tombstone_ttl > 0
    for token_key in store.scan("ttl:__gen__*", 100):
        token_ttl = store.ttl_ms(token_key)
        assert token_ttl is not None
        assert token_ttl >= 2 * 60_000
    clock.advance(tombstone_ttl / 1000 + 1)
    assert store.peek(key) is None  # the tombstone is gone: no leak


def test_store_ttl_primitives() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("a", b"1", 1000)
    assert store.ttl_ms("a") == 1000
    clock.advance(0.25)
    assert store.ttl_ms("a") == 750
    clock.advance(0.75)
    assert store.get_many(EntryKeys.of("a")) == [None]
    assert store.ttl_ms("a") is None
    entry = EntryKeys.of("r", ["t"])
    assert store.create_tokens(entry, ["t"], [b"x"], 5000) == [b"x"]
    assert store.create_tokens(entry, ["t"], [b"y"], 5000) == [b"x"]  # only if absent
    assert store.get_many(entry) == [None, b"x"]
    assert store.acquire_lock("l", b"me", 1000)
    assert not store.acquire_lock("l", b"you", 1000)
    store.release_lock("l", b"you")  # not the owner: kept
    assert not store.acquire_lock("l", b"you", 1000)
    clock.advance(1.0)
    assert store.acquire_lock("l", b"you", 1000)  # the lock expired


def test_token_reads_remembered_between_hits_see_every_change() -> None:
    """A hit remembers the tokens it read until the token table changes: every way a token
    changes (bump, unlink, delete, expiry, eviction) is seen by the next read."""
    clock = FakeClock()
    store = MemoryStore(max_entries=1, clock=clock)  # token room: 2 + TOKEN_SPARE
    entry = EntryKeys.of("e", ["root", "own"])
    store.create_tokens(entry, ["root", "own"], [b"r1", b"o1"], 10_000)
    assert store.get_many(entry) == [None, b"r1", b"o1"]
    assert store.get_many(entry) == [None, b"r1", b"o1"]  # remembered
    store.bump("own", b"o2", 10_000)
    assert store.get_many(entry) == [None, b"r1", b"o2"]
    store.unlink_token("root")
    assert store.get_many(entry) == [None, None, b"o2"]
    store.bump("root", b"r2", 10_000)
    assert store.get_many(entry) == [None, b"r2", b"o2"]
    store.delete(["own"])
    assert store.get_many(entry) == [None, b"r2", None]
    store.bump("own", b"o3", 500)
    assert store.get_many(entry) == [None, b"r2", b"o3"]
    clock.advance(0.5)  # "own" expires with no other change to the table
    assert store.get_many(entry) == [None, b"r2", None]
    store.bump("own", b"o4", 10_000)
    assert store.get_many(entry) == [None, b"r2", b"o4"]
    for n in range(200):  # other tokens evict these two
        store.bump(f"other{n}", b"x", 10_000)
    assert store.get_many(entry) == [None, None, None]


# -- bounds -----------------------------------------------------------------------------------


def test_store_evicts_the_least_recently_used_entry() -> None:
    store = MemoryStore(max_entries=3)
    for key in "abc":
        store.set(key, key.encode(), 60_000)
    assert store.peek("a") == b"a"  # a is now the most recent
    store.set("d", b"d", 60_000)
    assert [store.peek(k) for k in "abcd"] == [b"a", None, b"c", b"d"]
    assert store.size[0] == 3
    assert store.evictions == 1


def test_store_is_bounded_by_bytes() -> None:
    store = MemoryStore(max_bytes=1000)
    for i in range(50):
        store.set(f"k{i}", b"x" * 100, 60_000)
        assert store.size[1] <= 1000
    assert store.peek("k49") == b"x" * 100
    assert store.peek("k0") is None
    store.set("huge", b"x" * 5000, 60_000)  # larger than the whole bound: not kept
    assert store.size[1] <= 1000


async def test_a_bounded_cache_keeps_its_most_recently_used_entries() -> None:
    # The bound counts entries; generation tokens are kept in a table of their own.
    cache = Cache.from_url("memory://?max_entries=3", namespace="lru")
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="a")
    async def value(n: int) -> int:
        calls(n)
        return n

    for n in (1, 2, 3):
        await value(n)
    await value(1)  # 1 is recent, 2 is the least recently used
    await value(4)  # evicts 2
    assert calls.count == 4
    await value(1)
    await value(3)
    assert calls.count == 4
    await value(2)
    assert calls.count == 5
    assert store_of(cache).size[0] <= 3


async def test_max_entries_three_holds_three_entries() -> None:
    cache = Cache.from_url("memory://?max_entries=3", namespace="lru")
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="a")
    async def value(n: int) -> int:
        calls(n)
        return n

    for n in (1, 2, 3, 1, 2, 3):
        await value(n)
    assert calls.count == 3


async def test_a_byte_bounded_cache_never_exceeds_its_bound() -> None:
    cache = Cache.from_url("memory://?max_bytes=20000", namespace="lru")
    store = store_of(cache)

    @cache.cached(ttl=60, key_prefix="big")
    async def blob(n: int) -> str:
        return str(n) * 1000

    for n in range(100):
        assert await blob(n) == str(n) * 1000
        assert store.size[1] <= 20000
    assert store.evictions > 0
    assert await blob(99) == "99" * 1000
    assert cache.stats()["big"].hits == 1  # the most recent entry survived


def test_glob_semantics_match_redis() -> None:
    cases = {
        "booking:*": (["booking:a", "booking:"], ["bookings:a"]),
        "book?": (["books"], ["book", "bookss"]),
        "day-[12]": (["day-1", "day-2"], ["day-3"]),
        "day-[^1]": (["day-2"], ["day-1"]),
        "day-[a-c]": (["day-b"], ["day-d"]),
        "a\\*b": (["a*b"], ["axb"]),
        "a%2A:*": (["a%2A:x"], ["a*:x"]),
    }
    for pattern, (matching, other) in cases.items():
        regex = glob_to_regex(pattern)
        assert all(regex.match(k) for k in matching), pattern
        assert not any(regex.match(k) for k in other), pattern


# -- threads ----------------------------------------------------------------------------------


def test_threads_hammering_one_cache_get_correct_results() -> None:
    cache = Cache.from_url("memory://?max_entries=200", namespace="threads")
    generation = [0]
    lock = threading.Lock()

    @cache.cached(ttl=60, key_prefix="sq:{group}")
    def square(group: int, n: int) -> tuple[int, int]:
        with lock:
            seen = generation[0]
        return n * n, seen

    @cache.invalidate_cache("sq:*")
    def bump() -> None:
        with lock:
            generation[0] += 1

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        try:
            start.wait(5)
            for i in range(400):
                n = (seed * 31 + i) % 40
                value, seen = square(n % 4, n)
                assert value == n * n
                with lock:
                    current = generation[0]
                assert seen <= current
                if seed == 0 and i % 50 == 0:
                    bump()
                if i % 97 == 0:
                    square.invalidate(n % 4, n)
        except BaseException as exc:
            errors.append(exc)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert errors == []
    stats = cache.stats()["sq:{group}"]
    assert stats.errors == 0
    assert stats.hits > 0
    assert stats.lookups == 8 * 400
    # After the last bump, every value returned carries the latest generation.
    with lock:
        final = generation[0]
    assert all(square(g, n)[1] == final for g in range(4) for n in range(g, 40, 4))
