#!/usr/bin/env python3
"""The in-process hit of ``f(a: int, b: str) -> dict``: freshcache's memory:// hit (and, with
``--redis``, its near-cache hit over a private Redis) next to cachetools' ``TTLCache``, for
sync functions (``cachetools.cached``) and async ones (cachetools has no async decorator: the
reference is a coroutine that looks its key up in a ``TTLCache`` inline, the least any async
in-process cache can cost).

    .venv/bin/python benchmarks/inprocess_hit.py [--redis]

The cases run in interleaved rounds and are timed in CPU time of this process
(``time.process_time``), so that other work on a shared machine does not land in one case's
rounds more than another's; the table gives the median and the fastest round, and the ratio
to cachetools of each.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cachetools  # noqa: E402

import freshcache  # noqa: E402

CALLS = 20_000
ROUNDS = 30


def _value(a: int, b: str) -> dict[str, Any]:
    return {"a": a, "b": b, "items": [1, 2, 3], "name": "x" * 40}


def _sync_cases(near_url: str | None) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    memory = freshcache.Cache.from_url("memory://", namespace="bench-inproc")
    table: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=10_000, ttl=60)

    @memory.cached(ttl=60, key_prefix="rows")
    def f_memory(a: int, b: str) -> dict[str, Any]:
        return _value(a, b)

    @cachetools.cached(table)
    def f_cachetools(a: int, b: str) -> dict[str, Any]:
        return _value(a, b)

    cases: dict[str, Callable[[], Any]] = {
        "cachetools TTLCache": lambda: f_cachetools(7, "x"),
        "freshcache memory:// hit": lambda: f_memory(7, "x"),
    }
    caches: list[Any] = [memory]
    if near_url is not None:
        # A lease long enough that no round of the measurement revalidates in the foreground.
        near = freshcache.Cache.from_url(near_url, namespace="bench-inproc", near_lease=5.0)

        @near.cached(ttl=60, key_prefix="rows")
        def f_near(a: int, b: str) -> dict[str, Any]:
            return _value(a, b)

        cases["freshcache near hit (Redis behind)"] = lambda: f_near(7, "x")
        caches.append(near)
    for case in cases.values():
        case()
        case()
    return cases, caches


def _async_cases(near_url: str | None) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    memory = freshcache.Cache.from_url("memory://", namespace="bench-inproc-async")
    table: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=10_000, ttl=60)

    @memory.cached(ttl=60, key_prefix="rows")
    async def f_memory(a: int, b: str) -> dict[str, Any]:
        return _value(a, b)

    async def f_cachetools(a: int, b: str) -> dict[str, Any]:
        key = (a, b)
        found = table.get(key)
        if found is None:
            found = table[key] = _value(a, b)
        return found  # type: ignore[no-any-return]

    cases: dict[str, Callable[[], Any]] = {
        "cachetools TTLCache": lambda: f_cachetools(7, "x"),
        "freshcache memory:// hit": lambda: f_memory(7, "x"),
    }
    caches: list[Any] = [memory]
    if near_url is not None:
        near = freshcache.Cache.from_url(near_url, namespace="bench-inproc-async", near_lease=5.0)

        @near.cached(ttl=60, key_prefix="rows")
        async def f_near(a: int, b: str) -> dict[str, Any]:
            return _value(a, b)

        cases["freshcache near hit (Redis behind)"] = lambda: f_near(7, "x")
        caches.append(near)
    return cases, caches


Round = Callable[[Callable[[], Any]], Awaitable[float]]


async def sync_round(fn: Callable[[], Any]) -> float:
    """CPU seconds of CALLS calls of a sync case."""
    began = time.process_time()
    for _ in range(CALLS):
        fn()
    return time.process_time() - began


async def async_round(fn: Callable[[], Any]) -> float:
    """CPU seconds of CALLS awaited calls of an async case."""
    began = time.process_time()
    for _ in range(CALLS):
        await fn()
    return time.process_time() - began


async def measure(
    cases: dict[str, Callable[[], Any]], timed: Round
) -> dict[str, tuple[float, float]]:
    """Interleaved rounds, the order rotated each round: (median, fastest) µs per call."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(ROUNDS):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            samples[name].append(await timed(cases[name]) / CALLS * 1e6)
    return {name: (statistics.median(v), min(v)) for name, v in samples.items()}


def report(results: dict[str, tuple[float, float]], face: str) -> None:
    base_med, _ = results["cachetools TTLCache"]
    print(f"| in-process hit, {face} | µs/call median | fastest round | × cachetools (median) |")
    print("| --- | --- | --- | --- |")
    for name, (med, low) in results.items():
        print(f"| {name} | {med:.2f} | {low:.2f} | {med / base_med:.2f}× |")


async def _run(url: str | None) -> None:
    cases, caches = _sync_cases(url)
    report(await measure(cases, sync_round), "sync")
    print()
    async_cases, async_caches = _async_cases(url)
    try:
        for case in async_cases.values():
            await case()
            await case()
        report(await measure(async_cases, async_round), "async")
    finally:
        for cache in caches:
            cache.close()
        for cache in [*caches, *async_caches]:
            await cache.aclose()


def main(argv: list[str]) -> None:
    server = None
    url = None
    if "--redis" in argv:
        from benchmarks.common import start_redis

        server = start_redis()
        url = server.url
    try:
        asyncio.run(_run(url))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
