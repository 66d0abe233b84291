"""The hit path is written out twice (``Engine._read_async`` and ``_read_sync``: a generator
would cost it a microsecond). One scenario table runs through both, on every backend, and the
two must agree, call for call and counter for counter, with what the table says."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from fc_helpers import Raw

from freshcache import Cache

#: (action, argument, expected result or None). Actions: "read" a day's value; "bump" the
#: day's source value and invalidate its prefix; "drop" the day's entry alone; "all" the
#: whole namespace (the first segment's token).
SCENARIO: list[tuple[str, int, int | None]] = [
    ("read", 1, 100),  # miss, set
    ("read", 1, 100),  # hit
    ("read", 2, 200),  # miss, set
    ("read", 1, 100),  # hit
    ("bump", 1, None),  # generation invalidation of slots:1:*
    ("read", 1, 101),  # stale (the old entry carries the replaced token), set
    ("read", 2, 200),  # hit: another prefix
    ("drop", 2, None),  # entry invalidation (the entry's own token replaced)
    ("read", 2, 200),  # stale (the old entry carries the replaced entry token), set
    ("read", 2, 200),  # hit
    ("all", 0, None),  # the namespace's root token
    ("read", 1, 101),  # stale
    ("read", 2, 200),  # stale
    ("read", 2, 200),  # hit
]
EXPECTED = {"hits": 5, "misses": 2, "stale": 4, "sets": 6}


@dataclasses.dataclass
class Source:
    values: dict[int, int] = dataclasses.field(default_factory=lambda: {1: 100, 2: 200})
    loads: int = 0

    def load(self, day: int) -> int:
        self.loads += 1
        return self.values[day]


def _counts(cache: Cache, prefix: str) -> dict[str, Any]:
    record = cache.stats()[prefix]
    return {
        "hits": record.hits,
        "misses": record.misses,
        "stale": record.stale,
        "sets": record.sets,
        "invalidations": dict(record.invalidations),
        "errors": record.errors,
        "bypasses": record.bypasses,
    }


async def _run_async(cache: Cache, source: Source) -> list[int | None]:
    @cache.cached(ttl=60, key_prefix="slots:{day}")
    async def slots(day: int) -> int:
        return source.load(day)

    seen: list[int | None] = []
    for action, day, _ in SCENARIO:
        if action == "read":
            seen.append(await slots(day))
            continue
        seen.append(None)
        if action == "bump":
            source.values[day] += 1
            await cache.invalidate(f"slots:{day}:*")
        elif action == "drop":
            await slots.invalidate(day)
        else:
            await cache.invalidate("*")
    return seen


def _run_sync(cache: Cache, source: Source) -> list[int | None]:
    @cache.cached(ttl=60, key_prefix="slots:{day}")
    def slots(day: int) -> int:
        return source.load(day)

    seen: list[int | None] = []
    for action, day, _ in SCENARIO:
        if action == "read":
            seen.append(slots(day))
            continue
        seen.append(None)
        if action == "bump":
            source.values[day] += 1
            cache.invalidate_sync(f"slots:{day}:*")
        elif action == "drop":
            slots.invalidate(day)
        else:
            cache.invalidate_sync("*")
    return seen


async def test_both_hit_paths_agree_on_one_scenario(
    make_cache: Callable[..., Cache], unique_namespace: str
) -> None:
    async_cache = make_cache()
    sync_cache = Cache.from_url(async_cache.url, namespace=f"{unique_namespace}-sync", timeout=2.0)
    try:
        async_source, sync_source = Source(), Source()
        async_seen = await _run_async(async_cache, async_source)
        # The sync path blocks: off the event loop, as a sync caller would run it.
        sync_seen = await asyncio.to_thread(_run_sync, sync_cache, sync_source)
    finally:
        await asyncio.to_thread(sync_cache.close)
        raw = Raw(sync_cache)
        await raw.cleanup()
        await raw.aclose()
        await sync_cache.aclose()
    expected = [result for _, _, result in SCENARIO]
    assert async_seen == expected
    assert sync_seen == expected
    async_counts = _counts(async_cache, "slots:{day}")
    assert async_counts == _counts(sync_cache, "slots:{day}")
    assert {k: async_counts[k] for k in EXPECTED} == EXPECTED
    assert async_counts["errors"] == 0
    assert async_counts["bypasses"] == 0
    assert async_source.loads == sync_source.loads == EXPECTED["sets"]


@pytest.mark.parametrize("path", ["async", "sync"])
async def test_the_scenario_alone_on_each_path(path: str) -> None:
    """The table's expectations on one path at a time (memory: no cleanup needed), so a
    disagreement in the test above points at the path that drifted."""
    cache = Cache.from_url("memory://", namespace=f"alone-{path}")
    source = Source()
    if path == "async":
        seen = await _run_async(cache, source)
    else:
        seen = _run_sync(cache, source)
    assert seen == [result for _, _, result in SCENARIO]
    counts = _counts(cache, "slots:{day}")
    assert {k: counts[k] for k in EXPECTED} == EXPECTED
