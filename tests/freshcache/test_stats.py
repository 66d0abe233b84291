"""Stats (hits, misses, stale, sets, invalidations by kind): exact counters per key prefix
after a scripted sequence, on every backend."""

from __future__ import annotations

import dataclasses

import pytest

from freshcache import Cache, PrefixStats

PREFIX = "shop:items"


def snapshot(cache: Cache, prefix: str = PREFIX) -> dict[str, object]:
    s = cache.stats()[prefix]
    return {
        "hits": s.hits,
        "misses": s.misses,
        "stale": s.stale,
        "sets": s.sets,
        "invalidations": dict(s.invalidations),
        "errors": dict(s.errors_by_kind),
    }


async def test_exact_counters_after_a_scripted_sequence(cache: Cache) -> None:
    @cache.cached(ttl=60, key_prefix=PREFIX)
    async def items(n: int) -> list[int]:
        return list(range(n))

    @cache.cached(ttl=60, key_prefix=PREFIX)
    async def broken(n: int) -> object:
        return object()  # cannot be encoded

    expected = {"hits": 0, "misses": 0, "stale": 0, "sets": 0, "invalidations": {}, "errors": {}}

    def step(**changes: object) -> None:
        expected.update(changes)
        assert snapshot(cache) == expected

    await items(1)  # tokens missing: a miss, stored
    step(misses=1, sets=1)
    await items(1)
    await items(1)
    step(hits=2)
    await items(2)
    step(misses=2, sets=2)

    await cache.invalidate("shop:*")  # a generation bump of a prefix of this read prefix
    step(invalidations={"generation": 1})
    await items(1)  # the entry is there, under old tokens: stale, not a miss
    step(stale=1, sets=3)
    await items(1)
    step(hits=3)

    await items.invalidate(2)  # one entry: its own token replaced
    step(invalidations={"generation": 1, "entry": 1})
    await items(2)  # the entry is there, under its old entry token: stale
    step(stale=2, sets=4)
    await items(2)
    step(hits=4)

    await broken(1)
    step(misses=3, errors={"encode": 1})
    await broken(1)
    step(misses=4, errors={"encode": 2})

    counters = cache.stats()[PREFIX]
    assert counters.errors == 2
    assert counters.lookups == 4 + 4 + 2  # hits + misses + stale
    assert counters.hit_ratio == pytest.approx(4 / 10)
    assert counters.latency_count == 10  # every lookup timed
    assert counters.bypasses == 0


async def test_scan_invalidations_are_counted_as_scan(cache: Cache) -> None:
    @cache.cached(ttl=60, key_prefix=PREFIX)
    async def items(n: int) -> int:
        return n

    await items(1)
    await cache.invalidate("*:items:*")
    await cache.invalidate("shop:item?:*")
    assert cache.stats()["*:items"].invalidations == {"scan": 1}
    assert cache.stats()["shop:item?"].invalidations == {"scan": 1}
    await items(1)  # deleted: a miss
    assert snapshot(cache)["misses"] == 2


async def test_stats_are_per_prefix_and_hit_ratio_is_derived(cache: Cache) -> None:
    @cache.cached(ttl=60, key_prefix="a")
    async def a() -> int:
        return 1

    @cache.cached(ttl=60, key_prefix="b:{n}")
    async def b(n: int) -> int:
        return n

    await a()
    for _ in range(3):
        await a()
    for n in range(4):
        await b(n)
    stats = cache.stats()
    assert set(stats) == {"a", "b:{n}"}  # templated prefixes are counted as written
    assert stats["a"].hit_ratio == 0.75
    assert stats["b:{n}"].hit_ratio == 0.0
    assert stats["b:{n}"].misses == 4
    assert isinstance(stats["a"], PrefixStats)
    as_dict = stats["a"].as_dict()
    assert as_dict["hits"] == 3
    assert as_dict["hit_ratio"] == 0.75


async def test_a_snapshot_is_immutable_and_does_not_move(cache: Cache) -> None:
    @cache.cached(ttl=60, key_prefix="a")
    async def a() -> int:
        return 1

    await a()
    before = cache.stats()
    await a()
    assert before["a"].hits == 0
    assert cache.stats()["a"].hits == 1
    with pytest.raises(TypeError):
        before["x"] = before["a"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before["a"].hits = 5  # type: ignore[misc]
