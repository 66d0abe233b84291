"""Type-checked by mypy (not run by pytest): how users call the API keeps their types."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

import freshcache
from freshcache import Cache, cached, invalidate_cache


class Stats(BaseModel):
    total: int


@cached(ttl=300, key_prefix="booking:stats")
async def get_stats(limit: int = 10) -> Stats:
    return Stats(total=limit)


@cached(ttl=60, key_prefix="booking:availability:{day}")
def slots(day: dt.date) -> list[int]:
    return [day.day]


@invalidate_cache("booking:*")
async def create_booking(name: str) -> int:
    return len(name)


class Service:
    @cached(ttl=60, key_prefix="svc")
    async def lookup(self, booking_id: int) -> Stats:
        return Stats(total=booking_id)


async def usage() -> None:
    cache: Cache = freshcache.configure(url="memory://", namespace="typing")
    stats: Stats = await get_stats(3)
    fresh: Stats = await get_stats.uncached(limit=4)
    await get_stats.invalidate(3)
    warmed: Stats = await get_stats.warm()
    days: list[int] = slots(dt.date(2025, 10, 11))
    created: int = await create_booking("Ada")
    service = Service()
    found: Stats = await service.lookup(7)
    await service.lookup.invalidate(7)
    key: str = service.lookup.key_for(7)
    await cache.invalidate(freshcache.pattern("booking", "availability", dt.date.today(), "*"))
    print(stats, fresh, warmed, days, created, found, key, cache.stats())
