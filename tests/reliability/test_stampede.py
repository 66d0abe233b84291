"""Stampede control: single-flight, the distributed lock (across real processes), early
refresh, warming."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from freshcache import Cache

ROOT = Path(__file__).resolve().parents[2]


async def test_200_concurrent_callers_of_a_cold_key_run_the_body_once(cache: Cache) -> None:
    runs = 0

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats() -> dict[str, int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return {"total": 7}

    results = await asyncio.gather(*(stats() for _ in range(200)))
    assert runs == 1
    assert results == [{"total": 7}] * 200
    assert await stats() == {"total": 7}
    assert runs == 1


async def test_lock_in_one_process_still_answers_everyone(cache: Cache) -> None:
    runs = 0

    @cache.cached(ttl=60, key_prefix="booking:stats", lock=True, lock_timeout=2)
    async def stats() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return 42

    assert await asyncio.gather(*(stats() for _ in range(50))) == [42] * 50
    assert runs == 1


_WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    import redis.asyncio as aredis
    from freshcache import Cache

    url, namespace, start_at, callers, body_seconds, lock_timeout = sys.argv[1:7]

    async def main() -> None:
        cache = Cache.from_url(url, namespace=namespace, timeout=5.0, pool_timeout=30.0)
        counter = aredis.Redis.from_url(url)

        @cache.cached(
            ttl=60, key_prefix="booking:stats", lock=True, lock_timeout=float(lock_timeout)
        )
        async def stats() -> int:
            await counter.incr(f"{namespace}-body-runs")
            await asyncio.sleep(float(body_seconds))
            return 1234

        await asyncio.sleep(max(0.0, float(start_at) - time.time()))
        started = time.monotonic()
        results = await asyncio.gather(*(stats() for _ in range(int(callers))))
        assert results == [1234] * int(callers), results
        print("ok", time.monotonic() - started, flush=True)
        await counter.aclose()
        await cache.aclose()

    asyncio.run(main())
    """
)


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per data command (connection set-up such as CLIENT SETINFO and HELLO left out)."""
    info = client.info("commandstats")
    setup = ("cmdstat_client", "cmdstat_hello", "cmdstat_info", "cmdstat_ping")
    return {name: int(value["calls"]) for name, value in info.items() if not name.startswith(setup)}


#: The lock waiter's documented backoff: the first poll after 4 ms, doubling, at most 0.2 s.
LOCK_POLL_FIRST, LOCK_POLL_MAX = 0.004, 0.2


def _backoff_polls(seconds: float) -> int:
    """How many polls that backoff makes in ``seconds``."""
    polls, slept, delay = 0, 0.0, LOCK_POLL_FIRST
    while slept < seconds:
        slept += delay
        polls += 1
        delay = min(delay * 2, LOCK_POLL_MAX)
    return polls


@pytest.mark.slow
def test_lock_true_runs_the_body_once_across_processes(
    redis_url: str, unique_namespace: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    before = _commandstats(client)
    start_at = time.time() + 2.0  # every process starts its 50 callers at the same moment
    workers = [
        _spawn(redis_url, unique_namespace, str(start_at), "50", "0.05", "30") for _ in range(4)
    ]
    waited = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        word, seconds = out.split()
        assert word == "ok"
        waited.append(float(seconds))
    assert int(client.get(f"{unique_namespace}-body-runs") or 0) == 1
    after = _commandstats(client)
    # Each of the 200 callers reads once; beyond that, one flight per process polls with
    # exponential backoff: however long a loaded machine makes it wait, no more polls than
    # the backoff schedule allows for that time (plus the winner's look inside the lock),
    # never a polling storm.
    reads = after.get("cmdstat_mget", 0) - before.get("cmdstat_mget", 0)
    allowed = sum(_backoff_polls(seconds) + 2 for seconds in waited)
    assert reads - 200 <= allowed, f"{reads - 200} polling MGETs, backoff allows {allowed}"
    others = sum(after.values()) - sum(before.values()) - reads
    breakdown = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # Per process, not per caller: the server-identity check (GET/SET of its key), token and
    # entry-token creation (which processes race for, so how many SETs each makes depends on
    # the interleaving), the lock's SET NX and release, the store, TTL checks. 27 on an idle
    # machine; 200 callers storming would be hundreds.
    assert others <= 4 * 12, f"{others} commands besides reads for 4 processes: {breakdown}"
    client.delete(f"{unique_namespace}-body-runs")
    client.close()


@pytest.mark.slow
def test_a_dead_lock_holder_delays_others_by_at_most_the_lock_timeout(
    redis_url: str, unique_namespace: str
) -> None:
    # The holder takes the lock for 60 s; a waiter that gives up after its own lock_timeout
    # is back in seconds, one that waited for the holder's lock would take a minute.
    holder = _spawn(redis_url, unique_namespace, str(time.time()), "1", "120", "60")
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 20
    while int(client.get(f"{unique_namespace}-body-runs") or 0) < 1:  # holder is computing
        assert time.monotonic() < deadline, holder.stderr.read() if holder.stderr else ""
        time.sleep(0.02)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)  # reaps it and closes its pipes
    lock_timeout = 1.5

    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=5.0)

    async def body() -> int:
        return 99

    body.__qualname__ = "main.<locals>.stats"  # the same key as the dead holder's function
    stats = cache.cached(ttl=60, key_prefix="booking:stats", lock=True, lock_timeout=lock_timeout)(
        body
    )

    async def call() -> tuple[int, float]:
        started = time.monotonic()
        value = await stats()
        await cache.aclose()
        return value, time.monotonic() - started

    value, waited = asyncio.run(call())
    assert value == 99
    # The holder's lock was taken with lock_timeout=60 in the subprocess, but our waiter gives
    # up after its own lock_timeout and computes itself: at least lock_timeout, and far below
    # the holder's 60 s (the slack is for a loaded machine, not a latency claim).
    assert lock_timeout <= waited < 30, waited
    assert cache.stats()["booking:stats"].lock_waits == 1
    client.close()


async def test_early_refresh_recomputes_once_before_expiry(cache: Cache) -> None:
    runs = 0
    refresh_may_finish = asyncio.Event()

    @cache.cached(ttl=60, key_prefix="hot", early_refresh=True)
    async def hot() -> int:
        nonlocal runs
        runs += 1
        if runs == 2:
            # The refresh holds until every other caller has read: the test decides the
            # interleaving, a slow machine cannot (a caller that read after the refresh stored
            # would see a new entry and, with rand pinned to 0, rightly refresh it again).
            await refresh_may_finish.wait()
        await asyncio.sleep(0.01)  # a measurable compute time (delta) is stored with the entry
        return runs

    assert await hot() == 1
    cache.engine.rules.rand = lambda: 1.0  # ln(1) = 0: never early
    assert await hot() == 1
    cache.engine.rules.rand = lambda: 0.0  # -ln(0) is infinite: refresh now
    callers = [asyncio.create_task(hot()) for _ in range(20)]
    async with asyncio.timeout(60):  # a bound for a broken build, not a speed requirement
        while sum(task.done() for task in callers) < 19:
            await asyncio.sleep(0.001)
    refresh_may_finish.set()
    results = await asyncio.gather(*callers)
    assert runs == 2, "exactly one caller refreshed"
    assert sorted(results) == [1] * 19 + [2]  # the others were served the valid entry
    cache.engine.rules.rand = lambda: 1.0
    assert await hot() == 2
    assert cache.stats()["hot"].early_refreshes == 1


async def test_warm_recomputes_and_rewarm_runs_after_invalidation(cache: Cache) -> None:
    version = 1

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats() -> int:
        return version

    @cache.invalidate_cache("booking:*", rewarm=[lambda result, **kw: stats.warm()])
    async def write() -> None:
        nonlocal version
        version += 1

    assert await stats() == 1
    version = 5
    assert await stats() == 1  # cached
    assert await stats.warm() == 5  # recomputed and stored
    assert await stats() == 5
    await write()  # version 6, invalidated, then re-warmed
    sets_before = cache.stats()["booking:stats"].sets
    assert await stats() == 6
    assert cache.stats()["booking:stats"].sets == sets_before  # a hit: the re-warm stored it
