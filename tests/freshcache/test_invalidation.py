"""Invalidation by generation tokens (a bump per prefix, a tombstone per entry), on the audit's own
scenarios: every read after a write returns what the write did, only what was meant is
invalidated, and nothing a value contains can widen an invalidation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fc_helpers import Calls, Raw

import freshcache
from freshcache import Cache

STATS, SLOTS = "booking:stats", "booking:availability:{event_date}"
SAT, SUN, MON = dt.date(2025, 10, 11), dt.date(2025, 10, 12), dt.date(2025, 10, 13)


@dataclasses.dataclass(frozen=True)
class Booking:
    id: int
    event_date: dt.date


class BookingSystem:
    """The audited system: two cached reads, writes that invalidate them."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.bookings: dict[int, Booking] = {}
        self.stats_calls = Calls()
        self.slots_calls = Calls()

        @cache.cached(ttl=300, key_prefix="booking:stats")
        async def get_dashboard_stats() -> dict[str, int]:
            self.stats_calls()
            return {"bookings": len(self.bookings)}

        @cache.cached(ttl=60, key_prefix="booking:availability:{event_date}")
        async def get_available_slots(event_date: dt.date) -> list[int]:
            self.slots_calls(event_date)
            return sorted(b.id for b in self.bookings.values() if b.event_date == event_date)

        self.get_dashboard_stats = get_dashboard_stats
        self.get_available_slots = get_available_slots

    def add(self, booking_id: int, day: dt.date) -> Booking:
        booking = self.bookings[booking_id] = Booking(booking_id, day)
        return booking

    async def prime(self, *days: dt.date) -> None:
        await self.get_dashboard_stats()
        for day in days:
            await self.get_available_slots(day)

    def stats(self, prefix: str) -> tuple[int, int, int]:
        s = self.cache.stats()[prefix]
        return s.hits, s.misses, s.stale

    def invalidations(self, prefix: str) -> dict[str, int]:
        s = self.cache.stats().get(prefix)
        return {} if s is None else dict(s.invalidations)


@pytest.fixture
def system(cache: Cache) -> BookingSystem:
    return BookingSystem(cache)


# -- the audit's scenarios ------------------------------------------------------------------


async def test_a_write_invalidates_every_booking_read(system: BookingSystem) -> None:
    @system.cache.invalidate_cache("booking:*")
    async def create_booking(booking_id: int, day: dt.date) -> Booking:
        return system.add(booking_id, day)

    await system.prime(SAT, SUN)
    await system.prime(SAT, SUN)
    assert (system.stats_calls.count, system.slots_calls.count) == (1, 2)

    await create_booking(1, SAT)

    assert await system.get_dashboard_stats() == {"bookings": 1}
    assert await system.get_available_slots(SAT) == [1]
    assert await system.get_available_slots(SUN) == []
    assert (system.stats_calls.count, system.slots_calls.count) == (2, 4)
    # Counted under every read prefix the pattern reaches.
    assert system.invalidations(STATS) == {"generation": 1}
    assert system.invalidations(SLOTS) == {"generation": 1}
    # Stale entries are detected by their tokens, not deleted: counted as stale, not misses.
    assert system.stats("booking:stats") == (1, 1, 1)


async def test_a_write_that_raises_invalidates_nothing(system: BookingSystem) -> None:
    @system.cache.invalidate_cache("booking:*")
    async def create_booking(booking_id: int, day: dt.date) -> Booking:
        raise RuntimeError("constraint violated")

    system.add(1, SAT)
    await system.prime(SAT)
    with pytest.raises(RuntimeError, match="constraint violated"):
        await create_booking(2, SAT)
    await system.prime(SAT)
    assert (system.stats_calls.count, system.slots_calls.count) == (1, 1)
    assert system.invalidations(STATS) == system.invalidations(SLOTS) == {}


async def test_one_day_is_invalidated_and_other_days_stay_cached(system: BookingSystem) -> None:
    @system.cache.invalidate_cache("booking:availability:2025-10-11:*")
    async def book_saturday(booking_id: int) -> Booking:
        return system.add(booking_id, SAT)

    await system.prime(SAT, SUN, MON)
    await book_saturday(1)
    assert await system.get_available_slots(SAT) == [1]
    assert await system.get_available_slots(SUN) == []
    assert await system.get_available_slots(MON) == []
    assert await system.get_dashboard_stats() == {"bookings": 0}  # not in the pattern
    assert system.stats(SLOTS) == (2, 3, 1)
    assert system.stats(STATS) == (1, 1, 0)
    assert system.invalidations(SLOTS) == {"generation": 1}  # the day's prefix, as read
    assert system.invalidations(STATS) == {}


async def test_a_templated_value_cannot_widen_an_invalidation(system: BookingSystem) -> None:
    @system.cache.invalidate_cache("booking:availability:{day}:*")
    async def touch_day(day: str) -> None:
        return None

    await system.prime(SAT, SUN)
    for hostile in ["*", "2025-10-1?", "2025-10-1[12]", "2025-10-11:*", "\\*", "*:*"]:
        await touch_day(hostile)
    await system.prime(SAT, SUN)
    assert system.slots_calls.count == 2  # every day is still cached
    assert system.stats_calls.count == 1


async def test_an_escaped_pattern_cannot_widen_an_invalidation(system: BookingSystem) -> None:
    await system.prime(SAT, SUN)
    for hostile in ["*", "2025-10-1?", "2025-10-1[12]", "2025-10-11:*", "\\*"]:
        await system.cache.invalidate(freshcache.pattern("booking", "availability", hostile, "*"))
    await system.prime(SAT, SUN)
    assert (system.stats_calls.count, system.slots_calls.count) == (1, 2)
    # ... while the real day, built the same way, is invalidated:
    await system.cache.invalidate(freshcache.pattern("booking", "availability", SAT, "*"))
    await system.prime(SAT, SUN)
    assert system.slots_calls.args[-1] == (SAT,)
    assert system.slots_calls.count == 3


async def test_templates_over_arguments_and_result(system: BookingSystem) -> None:
    cache = system.cache

    @cache.invalidate_cache("booking:stats:*", "booking:availability:{result.event_date}:*")
    async def cancel_booking(booking_id: int) -> Booking:
        return system.bookings.pop(booking_id)

    @cache.invalidate_cache("booking:availability:{day}:*")
    async def close_day(day: dt.date) -> None:
        return None

    system.add(1, SAT)
    system.add(2, SUN)
    await system.prime(SAT, SUN)
    assert await cancel_booking(2) == Booking(2, SUN)
    assert await system.get_available_slots(SUN) == []
    assert await system.get_available_slots(SAT) == [1]  # still cached, and still right
    assert await system.get_dashboard_stats() == {"bookings": 1}
    assert system.slots_calls.args[-1] == (SUN,)
    assert (system.stats_calls.count, system.slots_calls.count) == (2, 3)

    await close_day(SAT)
    await system.prime(SAT, SUN)
    assert system.slots_calls.count == 4
    assert system.invalidations(SLOTS) == {"generation": 2}
    assert system.invalidations(STATS) == {"generation": 1}


async def test_a_template_that_cannot_be_filled_falls_back_to_a_coarser_pattern(
    system: BookingSystem,
) -> None:
    @system.cache.invalidate_cache("booking:availability:{result.event_date}:*")
    async def odd_write() -> None:
        return None  # result has no event_date

    await system.prime(SAT, SUN)
    await odd_write()  # does not raise after a write that succeeded
    await system.prime(SAT, SUN)
    assert system.slots_calls.count == 4  # booking:availability:* instead: coarser, never stale
    assert system.stats_calls.count == 1


@pytest.mark.parametrize("many", [False, True], ids=["one pattern", "a list"])
async def test_callable_patterns(system: BookingSystem, many: bool) -> None:
    seen: list[dict[str, Any]] = []

    def patterns(result: Booking, **arguments: Any) -> str | list[str]:
        seen.append({"result": result, **arguments})
        day = freshcache.pattern("booking", "availability", result.event_date, "*")
        return ["booking:stats:*", day] if many else day

    @system.cache.invalidate_cache(patterns)
    async def move_booking(booking_id: int, to: dt.date) -> Booking:
        return system.add(booking_id, to)

    system.add(1, SAT)
    await system.prime(SAT, SUN)
    assert await move_booking(1, to=SUN) == Booking(1, SUN)
    assert seen == [{"result": Booking(1, SUN), "booking_id": 1, "to": SUN}]
    assert await system.get_available_slots(SUN) == [1]
    assert await system.get_available_slots(SAT) == [1]  # not in the pattern: still cached
    await system.get_dashboard_stats()
    assert system.slots_calls.count == 3
    assert system.stats_calls.count == (2 if many else 1)


async def test_a_failing_callable_invalidates_the_whole_namespace(system: BookingSystem) -> None:
    def broken(result: object, **arguments: Any) -> str:
        raise KeyError("oops")

    @system.cache.invalidate_cache(broken)
    async def write() -> str:
        return "done"

    await system.prime(SAT)
    assert await write() == "done"  # the write succeeded: the caller never sees the error
    await system.prime(SAT)
    assert (system.stats_calls.count, system.slots_calls.count) == (2, 2)


async def test_several_patterns(system: BookingSystem) -> None:
    @system.cache.invalidate_cache("booking:stats:*", "booking:availability:2025-10-12:*")
    async def write() -> None:
        return None

    await system.prime(SAT, SUN)
    await write()
    await system.prime(SAT, SUN)
    assert system.stats_calls.count == 2
    assert [a for (a,) in system.slots_calls.args] == [SAT, SUN, SUN]


async def test_imperative_invalidation(system: BookingSystem) -> None:
    await system.prime(SAT)
    await system.cache.invalidate("booking:stats:*")
    await system.prime(SAT)
    assert (system.stats_calls.count, system.slots_calls.count) == (2, 1)
    assert system.invalidations(STATS) == {"generation": 1}
    assert system.invalidations(SLOTS) == {}
    await system.cache.invalidate("*")  # the whole namespace, still O(1)
    await system.prime(SAT)
    assert (system.stats_calls.count, system.slots_calls.count) == (3, 2)
    assert system.invalidations(STATS) == {"generation": 2}
    assert system.invalidations(SLOTS) == {"generation": 1}


async def test_invalidating_a_prefix_of_the_function_segment(system: BookingSystem) -> None:
    await system.prime(SAT)
    name = system.get_dashboard_stats.__qualname__
    await system.cache.invalidate(f"booking:stats:{freshcache.escape(name)}:*")
    await system.prime(SAT)
    assert (system.stats_calls.count, system.slots_calls.count) == (2, 1)


async def test_a_generation_bump_writes_one_key_whatever_the_keyspace(
    system: BookingSystem, raw: Raw
) -> None:
    for day in range(1, 21):
        await system.get_available_slots(dt.date(2025, 11, day))
    before = set(await raw.keys("*"))
    await system.cache.invalidate("booking:*")
    after = set(await raw.keys("*"))
    assert before == after  # nothing deleted: one token replaced
    for day in range(1, 21):
        await system.get_available_slots(dt.date(2025, 11, day))
    assert system.slots_calls.count == 40


# -- one entry ------------------------------------------------------------------------------


async def test_invalidating_one_entry_replaces_its_token_and_leaves_the_rest(
    system: BookingSystem, raw: Raw
) -> None:
    await system.prime(SAT, SUN)
    keys = system.cache.engine.keys
    key = system.get_available_slots.key_for(SAT)
    token_key = keys.entry_token_key(key[len(keys.namespace) + 1 :])
    before = await raw.get(token_key)
    assert before is not None  # created with the entry, read with its prefixes' tokens
    await system.get_available_slots.invalidate(SAT)
    after = await raw.get(token_key)
    assert after is not None
    assert after != before  # a new token: the stored entry no longer matches it
    ttl = await raw.pttl(token_key)
    assert ttl is not None
    assert ttl > 0
    await system.prime(SAT, SUN)
    assert [a for (a,) in system.slots_calls.args] == [SAT, SUN, SAT]
    assert system.stats_calls.count == 1
    counters = system.cache.stats()[SLOTS]
    assert counters.invalidations == {"entry": 1}
    # The invalidated entry is still stored, under its replaced token: stale, not a miss.
    assert (counters.hits, counters.misses, counters.stale) == (1, 2, 1)


async def test_an_exact_key_pattern_invalidates_one_entry(system: BookingSystem) -> None:
    await system.prime(SAT, SUN)
    relative = system.get_available_slots.key_for(SUN).split(":", 1)[1]
    await system.cache.invalidate(relative)
    await system.prime(SAT, SUN)
    assert [a for (a,) in system.slots_calls.args] == [SAT, SUN, SUN]
    assert system.invalidations(SLOTS) == {"entry": 1}


# -- patterns that are not segment-aligned: SCAN + UNLINK -------------------------------------


@pytest.mark.parametrize(
    ("pattern", "recomputed"),
    [
        ("*:stats:*", "stats"),
        ("book*", "both"),
        ("booking:availability:2025-10-1?:*", "slots"),
        ("booking:availability:2025-10-1[1]:*", "slots"),
    ],
)
async def test_non_aligned_patterns_fall_back_to_scan_and_unlink(
    system: BookingSystem, raw: Raw, pattern: str, recomputed: str
) -> None:
    await system.prime(SAT)
    tokens_before = {k: await raw.get(k) for k in await raw.token_keys()}
    stats_key = system.get_dashboard_stats.key_for()
    slots_key = system.get_available_slots.key_for(SAT)

    await system.cache.invalidate(pattern)

    assert (await raw.get(stats_key) is None) == (recomputed in ("stats", "both"))
    assert (await raw.get(slots_key) is None) == (recomputed in ("slots", "both"))
    assert {k: await raw.get(k) for k in await raw.token_keys()} == tokens_before
    # A glob is not mapped to read prefixes: it is counted under its own text.
    assert system.cache.stats()[pattern.removesuffix(":*")].invalidations == {"scan": 1}
    await system.prime(SAT)
    assert system.stats_calls.count == (2 if recomputed in ("stats", "both") else 1)
    assert system.slots_calls.count == (2 if recomputed in ("slots", "both") else 1)


async def test_the_naive_scan_strategy_deletes_entries(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache(strategy="scan")
    system = BookingSystem(cache)
    raw = Raw(cache)

    @cache.invalidate_cache("booking:*")
    async def create_booking(booking_id: int, day: dt.date) -> Booking:
        return system.add(booking_id, day)

    await system.prime(SAT, SUN)
    await system.prime(SAT, SUN)
    assert (system.stats_calls.count, system.slots_calls.count) == (1, 2)
    assert await raw.token_keys() == []  # no generations in the naive design
    entries = await raw.keys("booking:*")
    assert len(entries) == 3

    await create_booking(1, SAT)

    assert await raw.keys("booking:*") == []  # physically deleted by SCAN + UNLINK
    assert system.invalidations(STATS) == system.invalidations(SLOTS) == {"scan": 1}
    assert await system.get_available_slots(SAT) == [1]
    assert await system.get_dashboard_stats() == {"bookings": 1}
    await system.get_available_slots.invalidate(SAT)  # one entry: a plain delete
    assert await raw.get(system.get_available_slots.key_for(SAT)) is None
    await raw.aclose()


# -- tokens -----------------------------------------------------------------------------------


async def test_every_prefix_has_a_token_with_a_ttl(system: BookingSystem, raw: Raw) -> None:
    await system.prime(SAT)
    ns = system.cache.namespace
    name = freshcache.escape(system.get_available_slots.__qualname__)
    expected = {
        f"{ns}:__gen__",
        f"{ns}:__gen__:booking",
        f"{ns}:__gen__:booking:stats",
        f"{ns}:__gen__:booking:stats:{freshcache.escape(system.get_dashboard_stats.__qualname__)}",
        f"{ns}:__gen__:booking:availability",
        f"{ns}:__gen__:booking:availability:2025-10-11",
        f"{ns}:__gen__:booking:availability:2025-10-11:{name}",
    }
    assert set(await raw.token_keys()) == expected
    for key in expected:
        ttl = await raw.pttl(key)
        assert ttl is not None
        assert ttl > 0, key  # never immortal: token keys do not leak


async def test_a_token_outlives_the_longest_entry_stored_under_it(cache: Cache, raw: Raw) -> None:
    three_days = 3 * 24 * 3600

    @cache.cached(ttl=three_days, key_prefix="catalog:long")
    async def long_lived() -> int:
        return 1

    @cache.cached(ttl=5, key_prefix="catalog:short")
    async def short_lived() -> int:
        return 2

    await long_lived()
    await short_lived()  # stored later, shorter: must not shorten the shared tokens
    entry_ttl = await raw.pttl(long_lived.key_for())
    assert entry_ttl is not None
    assert entry_ttl > (three_days - 60) * 1000
    ns = cache.namespace
    for key in (f"{ns}:__gen__", f"{ns}:__gen__:catalog", f"{ns}:__gen__:catalog:long"):
        ttl = await raw.pttl(key)
        # The entry's TTL read after the token's: both count down, so however slowly these
        # reads come back on a loaded machine, the comparison is between the same moments.
        entry_now = await raw.pttl(long_lived.key_for())
        assert ttl is not None
        assert entry_now is not None
        assert ttl >= 2 * entry_now, key


async def test_a_bumped_token_is_extended_again_by_the_next_long_entry(
    cache: Cache, raw: Raw
) -> None:
    three_days = 3 * 24 * 3600

    @cache.cached(ttl=three_days, key_prefix="catalog:long")
    async def long_lived() -> int:
        return 1

    await long_lived()
    await cache.invalidate("catalog:*")
    await long_lived()
    ttl = await raw.pttl(f"{cache.namespace}:__gen__:catalog")
    assert ttl is not None
    assert ttl >= 2 * (three_days - 60) * 1000


# -- units of work ----------------------------------------------------------------------------


async def test_inside_a_unit_of_work_invalidations_wait_for_its_end(
    system: BookingSystem,
) -> None:
    cache = system.cache

    @cache.invalidate_cache("booking:*")
    async def create_booking(booking_id: int, day: dt.date) -> Booking:
        return system.add(booking_id, day)

    await system.prime(SAT)
    async with cache.deferred():
        await create_booking(1, SAT)
        assert system.invalidations(SLOTS) == {}  # not yet: the transaction has not committed
    assert system.invalidations(SLOTS) == {"generation": 1}
    assert await system.get_available_slots(SAT) == [1]

    async def rolled_back() -> None:
        async with cache.deferred():
            await create_booking(2, SAT)
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError, match="rollback"):
        await rolled_back()
    assert system.invalidations(SLOTS) == {"generation": 1}  # dropped
