"""``max_connections`` is one hard bound per cache and server, counted on the real server.

Every path draws from one budget: the hit lane's MGET, commands, pipelines and scripts, the
sync face and every event loop's async client together. Callers beyond the bound wait for a
connection (up to ``pool_timeout``) instead of failing; a ``Cache`` used from several event
loops keeps one client per loop and closes them all with the cache.

The counts come from the server (``CLIENT LIST``; ``rejected_connections`` under a real
``maxclients``), never from the client's own bookkeeping. Nothing here asserts a speed: the
timeouts are generous so that a loaded machine delays the callers without failing them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import multiprocessing
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from freshcache import Cache
from support.servers import RedisServer

from .clients import PeakSampler, rejected_connections, wait_for_connections

MAX = 20
CALLERS = 200
# Generous: a busy machine makes callers wait, it must not make them fail.
PATIENT = {"timeout": 5.0, "pool_timeout": 120.0}


@pytest.fixture
def limited_redis() -> Iterator[RedisServer]:
    """A private server that refuses connections beyond 25 (room for the probes)."""
    with RedisServer(args={"maxclients": "25"}) as server:
        yield server


def _answers(cache: Cache) -> tuple[object, object]:
    @cache.cached(ttl=300, key_prefix="async")
    async def double(n: int) -> int:
        return n * 2

    @cache.cached(ttl=300, key_prefix="sync")
    def triple(n: int) -> int:
        return n * 3

    return double, triple


async def test_sync_and_async_callers_together_open_at_most_max_connections(
    limited_redis: RedisServer,
) -> None:
    """100 coroutines and 100 threads at once, twice (cold, then warm), on one cache with
    max_connections=20: every call answered correctly, never more than 20 sockets on the
    server, none refused by maxclients 25, and the warm round is served from the cache."""
    cache = Cache.from_url(limited_redis.url, namespace="bound", max_connections=MAX, **PATIENT)
    double, triple = _answers(cache)
    half = CALLERS // 2
    start = threading.Barrier(half)

    def thread_call(n: int) -> int:
        start.wait()
        return triple(n)  # type: ignore[operator, no-any-return]

    try:
        with (
            PeakSampler(limited_redis) as sampler,
            concurrent.futures.ThreadPoolExecutor(half) as pool,
        ):
            for _round in ("cold", "warm"):
                threads = [pool.submit(thread_call, n) for n in range(half)]
                coroutines = await asyncio.gather(*(double(n) for n in range(half)))  # type: ignore[operator]
                assert coroutines == [n * 2 for n in range(half)]
                assert [f.result() for f in threads] == [n * 3 for n in range(half)]
        assert sampler.samples > 0
        assert sampler.peak <= MAX, f"{sampler.peak} connections open at once"
        assert rejected_connections(limited_redis) == 0
        stats = cache.stats()
        # The warm round was served from the cache, even with the server's maxclients at 25.
        assert stats["async"].hits >= 1
        # Both faces: the first sync and async calls check the server together, and only one
        # of them starts the namespace's generation (two would invalidate each other's entries).
        assert stats["sync"].hits >= 1
        assert stats["async"].errors == 0
        assert stats["sync"].errors == 0
    finally:
        await cache.aclose()
        cache.close()
    assert wait_for_connections(limited_redis, 0) == 0


async def test_callers_beyond_the_bound_wait_for_a_connection(private_redis: RedisServer) -> None:
    """max_connections=2 and 100 concurrent cold callers: they queue for the two sockets and
    are all answered from the cache path, none bypassed on "no free connection"."""
    cache = Cache.from_url(private_redis.url, namespace="wait", max_connections=2, **PATIENT)

    @cache.cached(ttl=300, key_prefix="q")
    async def ident(n: int) -> int:
        return n

    try:
        with PeakSampler(private_redis) as sampler:
            assert await asyncio.gather(*(ident(n) for n in range(100))) == list(range(100))
        stats = cache.stats()["q"]
        assert stats.errors == 0, dict(stats.errors_by_kind)
        assert stats.bypasses == 0
        assert stats.sets == 100
        assert sampler.peak <= 2
    finally:
        await cache.aclose()


def _run_loop_thread(
    cache: Cache, offset: int, ready: threading.Barrier, out: dict[int, object]
) -> None:
    double, _ = _answers(cache)

    async def main() -> None:
        ready.wait()  # both loops run at the same time
        client = cache.backends.async_backend.client  # type: ignore[attr-defined]
        for _round in range(3):
            ns = [offset + n for n in range(50)]
            got = await asyncio.gather(*(double(n) for n in ns))  # type: ignore[operator]
            assert got == [n * 2 for n in ns]
        # The same client from start to end: never traded with the other loop's.
        assert cache.backends.async_backend.client is client  # type: ignore[attr-defined]

    try:
        asyncio.run(main())
        out[offset] = "ok"
    except BaseException as exc:  # reported by the test, with its type
        out[offset] = exc


async def test_one_cache_from_two_event_loops_keeps_one_client_per_loop(
    private_redis: RedisServer,
) -> None:
    """Two threads, each with its own event loop, share one Cache: answers correct, no
    "attached to a different loop" error (none counted, none raised), one client per loop,
    the sockets bounded, and all of them closed with the cache."""
    cache = Cache.from_url(private_redis.url, namespace="loops", max_connections=MAX, **PATIENT)
    out: dict[int, object] = {}
    ready = threading.Barrier(2)
    threads = [
        threading.Thread(target=_run_loop_thread, args=(cache, offset, ready, out))
        for offset in (0, 1000)
    ]
    with PeakSampler(private_redis) as sampler:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert out == {0: "ok", 1000: "ok"}
    stats = cache.stats()["async"]
    assert stats.errors == 0, dict(stats.errors_by_kind)
    assert stats.hits >= 1  # the second and third rounds are hits in both loops
    assert sampler.peak <= MAX
    backend = cache.backends.async_backend
    assert backend.loops == 2  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        # Both loops are closed: their sockets are shut down from here, and the transports
        # that asyncio can no longer close are collected now rather than in a later test.
        warnings.simplefilter("ignore", ResourceWarning)
        cache.close()
        gc.collect()
    assert backend.loops == 0  # type: ignore[attr-defined]
    assert wait_for_connections(private_redis, 0) == 0


def test_loops_that_ended_give_their_connections_back(private_redis: RedisServer) -> None:
    """``asyncio.run`` five times on one cache (a new loop each time, as scripts and some
    frameworks do): a loop that is gone is forgotten and its sockets are closed, so the
    server never holds more than one loop's connections, and none after ``close``."""
    cache = Cache.from_url(private_redis.url, namespace="runs", max_connections=5, **PATIENT)
    double, _ = _answers(cache)
    backend = cache.backends.async_backend
    seen: list[int] = []

    async def burst(round_: int) -> None:
        got = await asyncio.gather(*(double(n) for n in range(20)))  # type: ignore[operator]
        assert got == [n * 2 for n in range(20)]
        assert backend.loops == 1  # type: ignore[attr-defined]  # the ended loops are gone

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for round_ in range(5):
            asyncio.run(burst(round_))
            seen.append(wait_for_connections(private_redis, 5))
        cache.close()
        gc.collect()
    assert max(seen) <= 5, seen
    assert wait_for_connections(private_redis, 0) == 0


def _read_in_child(cache: Cache, out: Any) -> None:
    _, triple = _answers(cache)
    out.send([triple(n % 50) for n in range(2000)])  # type: ignore[operator]
    out.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_never_uses_the_parents_sockets(private_redis: RedisServer) -> None:
    """The parent's idle connections are inherited by a forked child: using one from both
    processes could hand a reply to the wrong one. The child opens its own."""
    cache = Cache.from_url(private_redis.url, namespace="fork", max_connections=4, **PATIENT)
    _, triple = _answers(cache)
    assert [triple(n) for n in range(50)] == [n * 3 for n in range(50)]  # type: ignore[operator]
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_read_in_child, args=(cache, send))
    child.start()
    send.close()
    # The parent keeps reading on its sockets while the child reads on its own.
    got = [triple(n % 50) for n in range(2000)]  # type: ignore[operator]
    assert got == [n % 50 * 3 for n in range(2000)]
    assert receive.recv() == [n % 50 * 3 for n in range(2000)]
    child.join()
    assert child.exitcode == 0
    assert [triple(n) for n in range(50)] == [n * 3 for n in range(50)]  # type: ignore[operator]
    cache.close()
