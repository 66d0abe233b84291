"""A revalidation costs what a hit costs: one round trip to Redis, counted by Redis itself."""

from __future__ import annotations

import redis
from fastapi_app import Database, build_app, http_client

from freshcache import Cache

#: Connection set-up and the counting itself, not work done for the request.
_SETUP = ("cmdstat_client", "cmdstat_hello", "cmdstat_info", "cmdstat_ping")


def command_calls(client: redis.Redis) -> dict[str, int]:
    info = client.info("commandstats")
    return {k: int(v["calls"]) for k, v in info.items() if not k.startswith(_SETUP)}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


async def test_a_304_is_one_round_trip(redis_url: str, unique_namespace: str) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0)
    counter = redis.Redis.from_url(redis_url)
    try:
        async with http_client(build_app(cache, Database())) as client:
            first = await client.get("/availability/2030-10-11")
            await client.get("/availability/2030-10-11")  # connections are open now
            before = command_calls(counter)
            revalidated = await client.get(
                "/availability/2030-10-11", headers={"if-none-match": first.headers["etag"]}
            )
            after = command_calls(counter)
        assert revalidated.status_code == 304
        spent = delta(before, after)
        assert sum(spent.values()) == 1, spent  # the entry and its tokens in one command
    finally:
        keys = list(counter.scan_iter(match=f"{unique_namespace}:*", count=500))
        if keys:
            counter.delete(*keys)
        counter.close()
        await cache.aclose()
