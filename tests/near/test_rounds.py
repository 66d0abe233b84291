"""Concurrent reads of one hot key share the *next* round trip, never one already in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from freshcache import Cache
from freshcache._engine.rounds import NextRounds


async def test_callers_that_arrive_during_a_read_wait_for_the_next_one() -> None:
    rounds = NextRounds()
    sent: list[asyncio.Future[list[bytes | None]]] = []

    async def send() -> list[bytes | None]:
        answer: asyncio.Future[list[bytes | None]] = asyncio.get_running_loop().create_future()
        sent.append(answer)
        return await answer

    first = asyncio.ensure_future(rounds.fetch("k", send))
    await asyncio.sleep(0)
    assert len(sent) == 1  # the first caller's read is in flight
    later = [asyncio.ensure_future(rounds.fetch("k", send)) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(sent) == 1  # they did not send their own, nor join the one in flight
    sent[0].set_result([b"old"])
    assert await first == [b"old"]
    await asyncio.sleep(0)
    assert len(sent) == 2  # one read for all fifty, sent after every one of them arrived
    sent[1].set_result([b"new"])
    assert await asyncio.gather(*later) == [[b"new"]] * 50
    # Nobody waiting: the next caller sends at once.
    third = asyncio.ensure_future(rounds.fetch("k", send))
    await asyncio.sleep(0)
    assert len(sent) == 3
    sent[2].set_result([b"x"])
    assert await third == [b"x"]


async def test_a_cancelled_waiter_does_not_cancel_the_read_of_the_others() -> None:
    rounds = NextRounds()
    sent: list[asyncio.Future[list[bytes | None]]] = []

    async def send() -> list[bytes | None]:
        answer: asyncio.Future[list[bytes | None]] = asyncio.get_running_loop().create_future()
        sent.append(answer)
        return await answer

    first = asyncio.ensure_future(rounds.fetch("k", send))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(rounds.fetch("k", send))
    stayer = asyncio.ensure_future(rounds.fetch("k", send))
    await asyncio.sleep(0)
    quitter.cancel()
    sent[0].set_result([b"1"])
    await first
    await asyncio.sleep(0)
    sent[1].set_result([b"2"])
    assert await stayer == [b"2"]
    assert quitter.cancelled()


async def test_200_callers_of_an_expired_hot_key_cost_two_reads(
    private_redis: Any, unique_namespace: str
) -> None:
    cache = Cache.from_url(
        private_redis.url, namespace=unique_namespace, timeout=5.0, near_lease=60
    )

    @cache.cached(ttl=60, key_prefix="hot")
    async def hot() -> int:
        return 7

    assert await hot() == 7  # computed and stored
    cache.engine.near.clear()  # type: ignore[union-attr]
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_resetstat()
    # Every caller starts before any answer is read (one event loop tick): the first sends its
    # MGET, the other 199 share the next one.
    assert await asyncio.gather(*(hot() for _ in range(200))) == [7] * 200
    stats = admin.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 2
    admin.close()
    await cache.aclose()
