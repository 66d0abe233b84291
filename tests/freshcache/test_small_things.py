"""What users of other caching libraries expect: TTLs as text, ``condition=``,
``cache.bypass()``, and ``get`` / ``set`` / ``delete`` of single values under the token rules.
Every test that takes ``cache`` runs on each backend of the suite (memory, Redis, Cluster)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable

import pytest
from fc_helpers import Calls, Raw
from pydantic import BaseModel

from freshcache import Cache

# ------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("ttl", "expected_ms"),
    [
        (90, 90_000),
        (1.5, 1_500),
        (dt.timedelta(minutes=2), 120_000),
        ("90s", 90_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1d2h3m4s", 93_784_000),
        ("1.5h", 5_400_000),
        ("250ms", 250),
        (" 2M ", 120_000),
    ],
)
def test_every_duration_form_gives_the_same_milliseconds(
    ttl: float | dt.timedelta | str, expected_ms: int
) -> None:
    cache = Cache("memory://", namespace="durations", default_ttl=ttl)
    decorated = cache.cached(ttl=ttl, key_prefix="d", lock=True, lock_timeout=ttl)(_double)
    assert cache.default_ttl_ms == expected_ms
    assert decorated.spec.ttl_ms == expected_ms
    assert decorated.spec.lock_timeout_ms == expected_ms


@pytest.mark.parametrize("name", ["ttl", "default_ttl", "lock_timeout"])
@pytest.mark.parametrize("text", ["5x", "1m1h", "", "h", "1 hour", "-5m", "5m" * 40])
def test_a_bad_duration_string_names_the_parameter_and_the_accepted_forms(
    name: str, text: str
) -> None:
    def declare() -> object:
        if name == "default_ttl":
            return Cache("memory://", namespace="durations", default_ttl=text)
        return Cache("memory://", namespace="durations").cached(key_prefix="d", **{name: text})(
            _double
        )

    with pytest.raises(ValueError, match=rf"{name}=.* is not a duration; use seconds") as info:
        declare()
    assert "'90s', '5m', '1h', '1d' or '1h30m'" in str(info.value)
    assert len(str(info.value)) < 300  # never echoes megabytes back


@pytest.mark.parametrize("ttl", [0, -1, "0s", "0m0s", dt.timedelta(0), float("nan")])
def test_zero_and_negative_durations_raise_at_decoration_time(ttl: object) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        Cache("memory://", namespace="durations").cached(ttl=ttl, key_prefix="d")(_double)


async def test_a_text_ttl_is_the_stored_entry_ttl(cache: Cache, raw: Raw) -> None:
    get = cache.cached(ttl="1h30m", key_prefix="textttl")(_async_double)
    assert await get(2) == 4
    pttl = await raw.pttl(get.key_for(2))
    assert pttl is not None
    assert 5_000_000 < pttl <= 5_400_000


# ------------------------------------------------------------------------------ condition=


async def test_condition_false_returns_the_value_and_stores_nothing(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="cond", condition=lambda r: r is not None)
    async def find(n: int) -> int | None:
        calls(n)
        return None if n < 0 else n

    assert await find(-1) is None
    assert await find(-1) is None  # not stored: computed again
    assert await find(3) == 3
    assert await find(3) == 3  # stored: a hit
    assert calls.count == 3
    stats = cache.stats()["cond"]
    assert stats.bypasses_by_reason.get("condition") == 2
    assert stats.sets == 1
    assert stats.hits == 1


async def test_condition_on_a_sync_function_and_on_warm(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="condsync", condition=lambda r: bool(r))
    def items(n: int) -> list[int]:
        calls(n)
        return list(range(n))

    assert items(0) == []
    assert items(0) == []
    assert items.warm(0) == []
    assert items(2) == [0, 1]
    assert items(2) == [0, 1]
    assert calls.count == 4
    assert cache.stats()["condsync"].bypasses_by_reason["condition"] == 3


async def test_a_condition_that_raises_stores_nothing_and_still_answers(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(result: int) -> bool:
        raise RuntimeError("condition bug")

    get = cache.cached(ttl=60, key_prefix="condraise", condition=refuse)(_async_double)
    assert await get(2) == 4
    assert await get(2) == 4
    assert cache.stats()["condraise"].bypasses_by_reason["condition"] == 2
    assert cache.stats()["condraise"].sets == 0
    assert "condition= of _async_double raised" in caplog.text


def test_condition_must_be_callable() -> None:
    with pytest.raises(TypeError, match="condition= must be a callable"):
        Cache("memory://", namespace="c").cached(key_prefix="c", condition=True)(_double)


# ------------------------------------------------------------------------------ bypass()


async def test_bypass_runs_reads_uncached_and_stores_nothing(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="byp")
    async def get(n: int) -> int:
        calls(n)
        return n * 10

    async with cache.bypass():
        assert await get(1) == 10
        assert await get(1) == 10
        assert await get.warm(1) == 10
    assert calls.count == 3
    assert await get(1) == 10  # nothing was stored inside: a miss now
    assert await get(1) == 10  # and stored now
    assert calls.count == 4
    assert cache.stats()["byp"].bypasses_by_reason["bypass"] == 3


async def test_invalidations_inside_bypass_still_apply(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="bypinv")
    async def get(n: int) -> int:
        calls(n)
        return calls.count

    assert await get(1) == 1
    async with cache.bypass():
        await cache.invalidate("bypinv:*")
        await cache.delete("bypinv:other")
    assert await get(1) == 2  # the invalidation applied: recomputed


async def test_bypass_is_task_local(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="byptask")
    async def get(n: int) -> int:
        calls(n)
        return n

    assert await get(5) == 5  # stored
    inside, release = asyncio.Event(), asyncio.Event()

    async def bypassing() -> None:
        async with cache.bypass():
            assert await get(5) == 5  # computed
            inside.set()
            await release.wait()

    task = asyncio.create_task(bypassing())
    await inside.wait()
    assert await get(5) == 5  # this task still hits while the other is inside its block
    release.set()
    await task
    assert calls.count == 2
    stats = cache.stats()["byptask"]
    assert stats.hits == 1
    assert stats.bypasses_by_reason["bypass"] == 1


def test_sync_bypass_nests_and_is_thread_local(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    other = make_cache()
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="bypsync")
    def get(n: int) -> int:
        calls(n)
        return n

    @other.cached(ttl=60, key_prefix="bypother")
    def get_other(n: int) -> int:
        calls(n)
        return n

    get(1)
    get_other(1)
    block = cache.bypass()
    with block:
        with block:  # re-entered: still bypassed after the inner block ends
            get(1)
        get(1)
        get_other(1)  # another cache is not bypassed: a hit
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(get(1)))  # a hit
        thread.start()
        thread.join()
    get(1)  # a hit again
    assert seen == [1]
    assert calls.count == 4
    assert cache.stats()["bypsync"].bypasses_by_reason["bypass"] == 2
    assert cache.stats()["bypsync"].hits == 2


# ------------------------------------------------------------------------------ get/set/delete


class Profile(BaseModel):
    name: str
    visits: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def test_set_then_get_round_trips_json_values(cache: Cache) -> None:
    assert await cache.get("odd:missing") is Cache.NO_VALUE
    assert await cache.get("odd:missing", default=None) is None
    assert await cache.set("odd:plain", {"a": [1, 2.5, None, "x"]}, ttl="5m") is True
    assert await cache.get("odd:plain") == {"a": [1, 2.5, None, "x"]}
    assert await cache.set("odd:none", None) is True
    assert await cache.get("odd:none", default=0) is None  # None is a value, not a miss
    stats = cache.stats()["odd"]
    assert stats.misses == 2
    assert stats.hits == 2
    assert stats.sets == 2


async def test_get_decodes_into_the_given_type(cache: Cache) -> None:
    await cache.set("user:{user_id}:profile", Profile(name="Ada", visits=3), user_id=42)
    found = await cache.get("user:{user_id}:profile", type=Profile, user_id=42)
    assert found == Profile(name="Ada", visits=3)
    await cache.set("points", [Point(1, 2)], type=list[Point])
    assert await cache.get("points", type=list[Point]) == [Point(1, 2)]
    assert await cache.get("points") == [{"x": 1, "y": 2}]


async def test_template_fields_are_escaped_into_one_segment(cache: Cache) -> None:
    await cache.set("user:{user_id}:name", "colons", user_id="a:b*")
    assert await cache.get("user:{user_id}:name", user_id="a:b*") == "colons"
    keys = await cache.keys("user:*")
    assert len(keys) == 1
    assert keys[0].count(":") == 3
    await cache.invalidate("user:a:*")  # not the escaped value's prefix
    assert await cache.get("user:{user_id}:name", user_id="a:b*") == "colons"


async def test_prefix_invalidation_and_delete_drop_a_value(cache: Cache, raw: Raw) -> None:
    await cache.set("user:42:avatar", "a.png")
    await cache.set("user:43:avatar", "b.png")
    await cache.set("other", 1)
    await cache.invalidate("user:42:*")
    assert await cache.get("user:42:avatar") is Cache.NO_VALUE
    assert await cache.get("user:43:avatar") == "b.png"
    await cache.invalidate("user:*")
    assert await cache.get("user:43:avatar", default="gone") == "gone"
    assert await cache.get("other") == 1
    await cache.delete("other")
    assert await cache.get("other", default="gone") == "gone"
    # delete replaces the value's own token, not a bare DEL: the old entry is still stored,
    # and never served again (a reader that loaded before the delete cannot revive it).
    stored = await raw.get(f"{cache.namespace}:other")
    assert stored is not None
    assert await cache.get("other", default="gone") == "gone"
    await cache.set("other", 2)  # a later set wins over the tombstone
    assert await cache.get("other") == 2
    await cache.invalidate("*")
    assert await cache.get("other", default=None) is None


def test_sync_twins(sync_cache: Cache) -> None:
    cache = sync_cache
    assert cache.set_sync("s:{n}", [1, 2], n=1, ttl=dt.timedelta(minutes=1)) is True
    assert cache.get_sync("s:{n}", n=1) == [1, 2]
    cache.delete_sync("s:{n}", n=1)
    assert cache.get_sync("s:{n}", n=1, default="gone") == "gone"
    cache.set_sync("s:2", Point(3, 4))
    assert cache.get_sync("s:2", type=Point) == Point(3, 4)
    cache.invalidate_sync("s:*")
    assert cache.get_sync("s:2", default=None) is None


async def test_a_stale_value_counts_as_stale(cache: Cache) -> None:
    await cache.set("st:key", 1)
    await cache.invalidate("st:*")
    assert await cache.get("st:key") is Cache.NO_VALUE
    assert cache.stats()["st"].stale == 1


async def test_delete_inside_a_unit_of_work_waits_for_the_commit(cache: Cache) -> None:
    await cache.set("uow:k", 1)
    async with cache.deferred():
        await cache.delete("uow:k")
        assert await cache.get("uow:k") == 1  # not applied yet
    assert await cache.get("uow:k", default=None) is None


@pytest.mark.parametrize(
    ("key", "fields", "error", "message"),
    [
        ("a::b", {}, ValueError, "has an empty segment"),
        ("a:*", {}, ValueError, "wildcards belong in invalidation patterns"),
        ("a:[x]", {}, ValueError, "wildcards belong"),
        ("", {}, ValueError, "must be 1 to 1024 characters"),
        ("k" * 5000, {}, ValueError, "must be 1 to 1024 characters"),
        ("__gen__:x", {}, ValueError, "reserved for freshcache's own"),
        ("a:{nope}", {}, ValueError, r"refers to \{nope\}"),
        ("a:{n}", {"n": 1, "tll": 5}, TypeError, "got tll=, which the key 'a:{n}' does not use"),
        (42, {}, TypeError, "key must be a string"),
    ],
)
async def test_bad_keys_are_refused_naming_the_problem(
    key: object, fields: dict[str, object], error: type[Exception], message: str
) -> None:
    cache = Cache("memory://", namespace="badkeys")
    for attempt in (
        lambda: cache.get(key, **fields),  # type: ignore[arg-type]
        lambda: cache.set(key, 1, **fields),  # type: ignore[arg-type]
        lambda: cache.delete(key, **fields),  # type: ignore[arg-type]
    ):
        with pytest.raises(error, match=message) as info:
            await attempt()
        assert len(str(info.value)) < 400


async def test_values_that_cannot_be_stored_raise_before_any_write(cache: Cache) -> None:
    small = Cache("memory://", namespace="small", max_value_bytes=100)
    with pytest.raises(ValueError, match="over the 100-byte limit"):
        await small.set("big", "x" * 1000)
    with pytest.raises(TypeError, match=r"cannot store a lock as JSON \(lock has no JSON encoding"):
        await cache.set("weird", threading.Lock())
    with pytest.raises(TypeError, match="pass type="):
        await cache.set("models", [Profile(name="a", visits=1)])
    with pytest.raises(ValueError, match="ttl must be positive"):
        await cache.set("zero", 1, ttl=0)
    with pytest.raises(TypeError, match=r"cache\.get type=: lock has no JSON encoding"):
        await cache.get("weird", type=type(threading.Lock()))
    assert await cache.keys("*") == []


async def test_an_unreachable_backend_is_a_miss_and_a_set_that_did_not_happen() -> None:
    # Nothing listens on port 1: a real refused connection, not a mock.
    cache = Cache("redis://127.0.0.1:1/0", namespace="down", timeout=0.5)
    try:
        assert await cache.get("k", default="fallback") == "fallback"
        assert await cache.set("k", 1) is False
        await cache.delete("k")  # kept for replay, never raised
        assert cache.health()["pending_invalidations"] == 1
        # Counted: as an error, or as a bypass while the server's identity cannot be checked.
        stats = cache.stats()["k"]
        assert stats.errors + stats.bypasses >= 2, stats
    finally:
        await cache.aclose()


def _double(n: int) -> int:
    return 2 * n


async def _async_double(n: int) -> int:
    return 2 * n


async def test_values_are_shared_and_invalidated_across_processes(
    redis_url: str, unique_namespace: str
) -> None:
    """Two Cache objects on one Redis stand for two processes: a value one sets, the other
    reads; an invalidation or a delete by either is seen by both."""
    first = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0)
    second = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0)
    try:
        assert await first.set("shared:{n}", Profile(name="Ada", visits=1), n=1) is True
        assert await second.get("shared:{n}", type=Profile, n=1) == Profile(name="Ada", visits=1)
        await second.invalidate("shared:*")
        assert await first.get("shared:{n}", n=1, default="gone") == "gone"
        await second.set("shared:2", 2)
        await first.delete("shared:2")
        assert await second.get("shared:2", default="gone") == "gone"
    finally:
        raw = Raw(first)
        await raw.cleanup()
        await raw.aclose()
        await first.aclose()
        await second.aclose()
