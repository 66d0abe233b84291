"""An invalidation made once the server answers again is applied, not only kept.

Reads may wait out the breaker's cool-down (reading around the cache is safe); an invalidation
may not: kept for a later replay, it lets other processes read what it invalidates until the
replay lands. Found by the stale-read checker: after a restart, or a pause of the writer's own
process, writes returned with their invalidations kept while other processes, already
reconnected, served the older value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from freshcache import Cache
from support.redis_server import RedisServer

from .invalidation_faults import Versions


def _read(cache: Cache, db: Versions):  # type: ignore[no-untyped-def]
    @cache.cached(ttl=300, key_prefix="room")
    async def read(room: int) -> int:
        return db.get(room)

    return read


async def _open_the_breaker(server: RedisServer, cache: Cache, db: Versions) -> None:
    read = _read(cache, db)
    server.pause()  # SIGSTOP: the reads time out
    try:
        assert await read(2) == 1  # answered around the cache
    finally:
        server.resume()
    assert cache.health()["breaker"] == "open"


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_an_invalidation_with_the_breaker_open_reaches_a_server_that_answers(
    private_redis: RedisServer, face: str
) -> None:
    db = Versions()
    # A long cool-down: the breaker is still open when the invalidation is made.
    writer = Cache.from_url(
        private_redis.url, namespace="after", timeout=0.2, breaker_threshold=1,
        breaker_cooldown_min=60.0, breaker_cooldown=60.0,
    )  # fmt: skip
    other = Cache.from_url(private_redis.url, namespace="after", timeout=5.0)
    try:
        other_read = _read(other, db)
        assert await other_read(1) == 1  # cached in the other process
        await _open_the_breaker(private_redis, writer, db)
        db.bump(1)
        if face == "async":
            await writer.invalidate("room:*")
        else:
            await asyncio.to_thread(writer.invalidate_sync, "room:*")
        assert writer.health()["pending_invalidations"] == 0  # applied, not only kept
        assert await other_read(1) == 2  # the other process sees it at once
    finally:
        await writer.aclose()
        await other.aclose()


def test_a_claim_waits_for_the_holder_then_takes_it_or_gives_up_at_its_bound() -> None:
    """``flows.claim``, driven by hand with a fake clock: the server check and the replay wait
    for another caller's (sleeping 2 ms doubling to 50) and take it once it is free; with the
    holder never done, they give up when ``wait`` has passed; ``wait=0`` never sleeps."""
    from freshcache._engine.flows import claim
    from freshcache._engine.ops import Sleep

    now = [0.0]

    def run(take: Callable[[], bool], wait: float) -> tuple[bool, list[float]]:
        flow, slept = claim(take, lambda: now[0], wait), []
        try:
            op = next(flow)
            while True:
                assert isinstance(op, Sleep)
                slept.append(op.seconds)
                now[0] += op.seconds
                op = flow.send(None)
        except StopIteration as done:
            return bool(done.value), slept

    tries = iter([False, False, False, True])
    assert run(lambda: next(tries), wait=2.0) == (True, [0.002, 0.004, 0.008])
    taken, slept = run(lambda: False, wait=1.0)
    assert not taken
    assert sum(slept) == pytest.approx(1.0)
    assert max(slept) == 0.05
    assert run(lambda: False, wait=0.0) == (False, [])
