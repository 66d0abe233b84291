"""The memory:// hit path (``Engine._memory_read_*``) and its hit memo: a hit is judged once per
change of the entry or its tokens, and every change is seen by the next read. Each test runs
on the sync and the async face; time is moved with an injected clock, never slept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fc_helpers import Calls, FakeClock

from freshcache import Cache
from freshcache.backends.memory import MemoryStore

Row = dict[str, Any]


class Face:
    """One cached function on one face: ``await face.read(n)`` whether it is sync or async."""

    def __init__(self, cache: Cache, name: str, calls: Calls, **options: Any) -> None:
        self.cache = cache
        self.name = name
        self.db: dict[int, str] = {}
        #: Runs inside the body (a test moves its clock there: a compute time).
        self.during_run: Callable[[], None] = lambda: None
        options.setdefault("ttl", 60)
        options.setdefault("key_prefix", "rows:{n}")

        def row(n: int) -> Row:
            self.during_run()
            return {"n": n, "v": self.db.get(n, "v1"), "run": calls(n), "items": [1, 2]}

        if name == "sync":

            @cache.cached(**options)
            def sync_row(n: int) -> Row:
                return row(n)

            self.fn: Any = sync_row
        else:

            @cache.cached(**options)
            async def async_row(n: int) -> Row:
                return row(n)

            self.fn = async_row

    async def read(self, n: int) -> Row:
        result = self.fn(n)
        if self.name == "async":
            result = await result
        assert isinstance(result, dict)
        return result

    async def invalidate_entry(self, n: int) -> None:
        result = self.fn.invalidate(n)
        if self.name == "async":
            await result

    async def invalidate(self, pattern: str) -> None:
        if self.name == "sync":
            self.cache.invalidate_sync(pattern)
        else:
            await self.cache.invalidate(pattern)

    def stats(self) -> Any:
        return self.cache.stats()["rows:{n}"]


@pytest.fixture(params=["sync", "async"])
def face_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_face(
    face_name: str, clock: FakeClock, unique_namespace: str
) -> Callable[..., tuple[Face, Calls]]:
    def make(url: str = "memory://", **options: Any) -> tuple[Face, Calls]:
        cache = Cache.from_url(url, namespace=unique_namespace, clock=clock)
        calls = Calls()
        return Face(cache, face_name, calls, **options), calls

    return make


def memo_of(face: Face) -> dict[str, Any]:
    assert face.cache.engine.memory_store is not None, "memory:// takes its own hit path"
    return face.cache.engine.hit_memo.entries


def store_of(face: Face) -> MemoryStore:
    store = face.cache.backends.sync_backend
    assert isinstance(store, MemoryStore)
    return store


async def warm(face: Face, n: int = 1) -> Row:
    """Store the entry, then serve it twice: the memo is warm."""
    first = await face.read(n)
    assert await face.read(n) == first
    assert await face.read(n) == first
    assert face.fn.key_for(n) in memo_of(face)
    return first


# -- hits -------------------------------------------------------------------------------------


async def test_a_hit_is_served_from_the_warm_memo(make_face: Callable[..., Any]) -> None:
    face, calls = make_face()
    assert (await warm(face))["run"] == 1
    assert calls.count == 1
    stats = face.stats()
    assert (stats.hits, stats.misses, stats.stale) == (2, 1, 0)
    # Every hit is observed, as on the full path (the miss too).
    assert stats.latency_count == 3
    # Different arguments are different entries, each judged on its own.
    assert (await face.read(2))["n"] == 2
    assert (await face.read(2))["run"] == 2
    assert (await face.read(1))["run"] == 1
    assert {face.fn.key_for(1), face.fn.key_for(2)} <= set(memo_of(face))


async def test_a_mutated_result_is_not_seen_by_the_next_caller(
    make_face: Callable[..., Any],
) -> None:
    face, _ = make_face()
    await warm(face)
    mine = await face.read(1)
    mine["v"] = "changed by a caller"
    mine["items"].append(3)
    theirs = await face.read(1)
    assert theirs == {"n": 1, "v": "v1", "run": 1, "items": [1, 2]}
    assert theirs is not mine
    assert theirs["items"] is not mine["items"]


# -- every change is seen by the next read ----------------------------------------------------


async def test_invalidating_a_prefix_is_seen_through_the_memo(
    make_face: Callable[..., Any],
) -> None:
    face, _ = make_face()
    await warm(face)
    face.db[1] = "v2"
    await face.invalidate("rows:*")
    fresh = await face.read(1)
    assert (fresh["v"], fresh["run"]) == ("v2", 2)
    assert (await face.read(1))["run"] == 2  # and the new entry is a hit again
    assert face.stats().stale == 1


async def test_invalidating_one_entry_is_seen_through_the_memo(
    make_face: Callable[..., Any],
) -> None:
    face, _ = make_face()
    await warm(face, 1)
    await warm(face, 2)
    face.db[1] = "v2"
    await face.invalidate_entry(1)
    assert (await face.read(1))["v"] == "v2"
    assert (await face.read(2))["run"] == 2  # the other entry is still served


async def test_a_new_value_stored_over_the_entry_is_served(
    make_face: Callable[..., Any],
) -> None:
    face, _ = make_face()
    await warm(face)
    face.db[1] = "v2"
    warmed = face.fn.warm(1)  # recomputed and stored over the remembered entry
    if face.name == "async":
        warmed = await warmed
    assert warmed["v"] == "v2"
    again = await face.read(1)
    assert (again["v"], again["run"]) == ("v2", 2)


async def test_an_expired_entry_is_not_served_from_the_memo(
    make_face: Callable[..., Any], clock: FakeClock
) -> None:
    face, _ = make_face(ttl=60)
    await warm(face)
    clock.advance(59.9)
    assert (await face.read(1))["run"] == 1  # still fresh
    face.db[1] = "v2"
    clock.advance(0.2)
    fresh = await face.read(1)
    assert (fresh["v"], fresh["run"]) == ("v2", 2)  # expired: recomputed


async def test_an_evicted_entry_is_not_served_from_the_memo(
    make_face: Callable[..., Any],
) -> None:
    face, _ = make_face("memory://?max_entries=2")
    await warm(face, 1)
    face.db[1] = "v2"
    await face.read(2)
    await face.read(3)  # the least recently used entry, 1, is evicted
    assert store_of(face).size[0] == 2
    fresh = await face.read(1)
    assert (fresh["v"], fresh["run"]) == ("v2", 4)


async def test_an_evicted_token_is_not_served_from_the_memo(
    make_face: Callable[..., Any],
) -> None:
    face, _ = make_face("memory://?max_entries=1")  # token room: 2 + TOKEN_SPARE
    await warm(face)
    face.db[1] = "v2"
    store = store_of(face)
    for n in range(200):  # other tokens evict the entry's
        store.bump(f"{face.cache.namespace}:__gen__:other{n}", b"x", 60_000)
    assert store.peek(face.fn.key_for(1)) is not None  # the entry itself is still there
    fresh = await face.read(1)
    assert (fresh["v"], fresh["run"]) == ("v2", 2)
    assert face.stats().misses == 2


async def test_a_token_that_expires_is_not_served_from_the_memo(
    make_face: Callable[..., Any], clock: FakeClock
) -> None:
    face, _ = make_face(ttl=60)
    await warm(face)
    store = store_of(face)
    own_token = face.cache.engine.keys.entry_token_key(face.fn.key_for(1).split(":", 1)[1])
    token = store.peek(own_token)
    assert token is not None
    store.bump(own_token, token, 1000)  # the same token, now a second to live
    assert (await face.read(1))["run"] == 1  # same value: still a hit
    face.db[1] = "v2"
    clock.advance(1.0)
    assert (await face.read(1))["v"] == "v2"


async def test_a_bounded_memo_still_serves_every_entry(make_face: Callable[..., Any]) -> None:
    face, _ = make_face()
    memo = face.cache.engine.hit_memo
    memo.max_entries = 3
    for n in range(10):
        await warm(face, n)
        assert len(memo.entries) <= 3
    for n in range(10):
        assert (await face.read(n))["run"] == n + 1
    assert memo.bytes == sum(len(j[0]) + len(j[2]) for j in memo.entries.values())


# -- what the full path does, through this one ------------------------------------------------


async def test_bypass_calls_through_and_counts(make_face: Callable[..., Any]) -> None:
    face, calls = make_face()
    await warm(face)
    face.db[1] = "v2"
    with face.cache.bypass():
        inside = await face.read(1)
    assert (inside["v"], inside["run"]) == ("v2", 2)
    stats = face.stats()
    assert stats.bypasses_by_reason == {"bypass": 1}
    assert (await face.read(1))["v"] == "v1"  # nothing stored: the entry is served again
    assert calls.count == 2


async def test_early_refresh_still_refreshes(
    make_face: Callable[..., Any], clock: FakeClock
) -> None:
    face, _ = make_face(early_refresh=True)
    face.during_run = lambda: clock.advance(0.05)  # a compute time (delta) for XFetch
    rules = face.cache.engine.rules
    rules.rand = lambda: 1.0  # ln(1) = 0: never early
    await face.read(1)
    assert (await face.read(1))["run"] == 1
    assert face.stats().hits == 1
    face.db[1] = "v2"
    rules.rand = lambda: 0.0  # -ln(0) is infinite: refresh now
    refreshed = await face.read(1)
    rules.rand = lambda: 1.0
    assert (refreshed["v"], refreshed["run"]) == ("v2", 2)
    assert (await face.read(1))["run"] == 2
    assert face.stats().early_refreshes == 1


async def test_verify_rate_still_checks_hits(
    face_name: str, clock: FakeClock, unique_namespace: str
) -> None:
    cache = Cache.from_url("memory://", namespace=unique_namespace, clock=clock, verify_rate=1)
    face = Face(cache, face_name, Calls())
    await face.read(1)
    assert (await face.read(1))["run"] == 1
    shadow = cache.engine.shadow
    assert shadow is not None
    await shadow.drain()
    assert face.stats().shadow_checks == 1


async def test_a_corrupt_entry_is_counted_and_recomputed(make_face: Callable[..., Any]) -> None:
    face, _ = make_face()
    await warm(face)
    store = store_of(face)
    key = face.fn.key_for(1)
    raw = store.peek(key)
    assert raw is not None
    header = raw[: raw.index(b"\x1e") + 1]
    store.set(key, header + b"{not json", 60_000)  # the stamp is current, the payload is not
    fresh = await face.read(1)
    assert fresh["run"] == 2
    assert face.stats().errors_by_kind == {"decode": 1}


async def test_substituted_faces_are_read(face_name: str, unique_namespace: str) -> None:
    """``backends.use()`` puts other faces in place: the hit path reads them, not the URL's."""
    from freshcache.backends.memory import AsyncMemoryBackend

    cache = Cache.from_url("memory://", namespace=unique_namespace)
    face = Face(cache, face_name, Calls())
    await warm(face)
    other = MemoryStore()
    cache.backends.use(async_backend=AsyncMemoryBackend(other), sync_backend=other)
    assert (await face.read(1))["run"] == 2  # the substitute holds nothing yet
    assert (await face.read(1))["run"] == 2
    assert other.peek(face.fn.key_for(1)) is not None
