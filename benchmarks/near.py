#!/usr/bin/env python3
"""The near cache side by side with the other designs, in one run on one private Redis.

    .venv/bin/python benchmarks/near.py [--quick]

The near cache runs twice: with extended leases (the default on standalone Redis,
``near_max_age`` 1 s) and with plain leases (``near_max_age=0``, what Redis Cluster uses).

1. Hot hit, one process, sequential (async): freshcache near hit, freshcache Redis hit,
   freshcache memory:// hit, cachetools, cashews (plain and with its client-side cache) and
   aiocache; µs per call (wall time, median of interleaved rounds).
2. Throughput (calls/s) with 1, 16, 64 and 1,000 concurrent callers, on one hot key and on
   1,000 keys, for the same libraries on Redis: each cell measured for every library back to
   back, three times with the order rotated, the median kept.
3. The write-side cost: ``cache.invalidate`` latency p50/p99 with and without the near cache.
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
from benchmarks.common import PAYLOAD, POOL_SIZE, SOCKET_TIMEOUT, percentile, start_redis  # noqa: E402
from benchmarks.libs import build_async  # noqa: E402

LEASE = 0.05
Call = Callable[[int], Awaitable[Any]]


#: The value of ``inprocess_hit.py`` (``f(a: int, b: str) -> dict``), for a second hot-hit table:
#: with PAYLOAD (1.2 KB) a near hit's cost is mostly the per-hit decode.
SMALL: dict[str, Any] = {"a": 7, "b": "x", "items": [1, 2, 3], "name": "x" * 40}


def _cashews_client_side(
    url: str, value: dict[str, Any], tag: str
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    cache.setup(url, client_side=True, socket_timeout=SOCKET_TIMEOUT, max_connections=POOL_SIZE)

    @cache(ttl=300, key=f"near-bench:{tag}:cashews-cs:{{arg}}")
    async def get(arg: int) -> Any:
        return value

    return get, cache.close


async def _subjects(
    url: str, value: dict[str, Any] = PAYLOAD, tag: str = "big"
) -> tuple[dict[str, Call], list[Callable[[], Any]]]:
    """Every library caching ``value`` (keys under ``near-bench:{tag}:``)."""
    closers: list[Callable[[], Any]] = []
    calls: dict[str, Call] = {}

    async def _body(arg: int) -> Any:
        return value

    near = build_async(
        "freshcache",
        url,
        _body,
        prefix=f"near-bench:{tag}:near",
        cache_options={"near_lease": LEASE},
    )
    calls["freshcache near (lease 50 ms)"] = near.call
    near_plain = build_async(
        "freshcache",
        url,
        _body,
        prefix=f"near-bench:{tag}:near-plain",
        cache_options={"near_lease": LEASE, "near_max_age": 0},
    )
    calls["freshcache near, plain leases"] = near_plain.call
    plain = build_async("freshcache", url, _body, prefix=f"near-bench:{tag}:redis")
    calls["freshcache Redis"] = plain.call
    memory = freshcache.Cache.from_url("memory://", namespace=f"near-bench-{tag}")

    @memory.cached(ttl=300, key_prefix="mem")
    async def from_memory(arg: int) -> dict[str, Any]:
        return value

    calls["freshcache memory://"] = from_memory
    table: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=10_000, ttl=300)

    @cachetools.cached(table)
    def from_cachetools(arg: int) -> Any:
        return value

    async def cachetools_call(arg: int) -> Any:
        return from_cachetools(arg)

    calls["cachetools (in-process only)"] = cachetools_call
    for lib in ("cashews", "aiocache", "naive"):
        subject = build_async(lib, url, _body, prefix=f"near-bench:{tag}:{lib}")
        calls[lib] = subject.call
        closers.append(subject.close)
    try:
        cs_call, cs_close = _cashews_client_side(url, value, tag)
        await cs_call(1)
        calls["cashews client_side"] = cs_call
        closers.append(cs_close)
    except Exception as exc:  # it needs RESP3 tracking; say so rather than fail the run
        print(f"cashews client_side does not run here: {exc.__class__.__name__}: {exc}")
    closers += [near.close, near_plain.close, plain.close, memory.aclose]
    return calls, closers


async def hot_hit(calls: dict[str, Call], per_round: int, rounds: int) -> dict[str, float]:
    for call in calls.values():
        await call(1)
        await call(1)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = calls[name]
            gc.collect()
            began = time.perf_counter()
            for _ in range(per_round):
                await call(1)
            samples[name].append((time.perf_counter() - began) / per_round * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


async def throughput(call: Call, callers: int, keys: int, seconds: float) -> float:
    for k in range(keys):
        await call(k)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < stop:
            await call(i % keys)
            i += 1
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(callers)))
    return done / (time.perf_counter() - began)


#: (callers, keys) of each throughput cell, in the table's column order.
CELLS = [(c, k) for k in (1, 1000) for c in (1, 16, 64, 1000)]


async def throughput_table(
    calls: dict[str, Call], libs: list[str], seconds: float, repeats: int
) -> dict[tuple[str, tuple[int, int]], float]:
    """Each cell measured for every library back to back, the libraries' order rotated from
    one repeat to the next, and the median kept: a shared machine's load drifts over
    minutes, and a table measured one library at a time would compare different machines."""
    samples: dict[tuple[str, tuple[int, int]], list[float]] = {}
    for repeat in range(repeats):
        for cell in CELLS:
            turn = repeat % len(libs)
            for name in libs[turn:] + libs[:turn]:
                rate = await throughput(calls[name], cell[0], cell[1], seconds)
                samples.setdefault((name, cell), []).append(rate)
    return {key: statistics.median(values) for key, values in samples.items()}


async def invalidation_latency(
    url: str, lease: float, n: int, max_age: float | None
) -> tuple[float, float]:
    options: dict[str, Any] = {"timeout": SOCKET_TIMEOUT, "near_lease": lease} if lease else {}
    if max_age is not None:
        options["near_max_age"] = max_age
    cache = freshcache.Cache.from_url(url, namespace="near-bench-inv", **options)

    @cache.cached(ttl=300, key_prefix="rows:{row_id}")
    async def row(row_id: int) -> int:
        return row_id

    latencies = []
    for i in range(n):
        await row(i % 10)
        await row(i % 10)
        began = time.perf_counter()
        await cache.invalidate(f"rows:{i % 10}:*")
        latencies.append((time.perf_counter() - began) * 1000)
    await cache.aclose()
    return percentile(latencies, 50), percentile(latencies, 99)


async def main(quick: bool) -> None:
    server = start_redis()
    try:
        per_round, rounds = (200, 10) if quick else (500, 30)
        small_calls, closers = await _subjects(server.url, SMALL, "small")
        calls, big_closers = await _subjects(server.url)
        closers += big_closers
        for title, subjects in (
            ("the value of inprocess_hit.py, 80 bytes of JSON", small_calls),
            ("PAYLOAD, 1.2 KB of JSON", calls),
        ):
            print(f"\n## Hot hit, one process, sequential (async): {title}\n")
            hits = await hot_hit(subjects, per_round, rounds)
            redis_hit = hits["freshcache Redis"]
            base = hits["cachetools (in-process only)"]
            print("| library | µs/call (median) | × cachetools | Redis hit / this |")
            print("| --- | --- | --- | --- |")
            for name, us in hits.items():
                print(f"| {name} | {us:.1f} | {us / base:.2f}× | {redis_hit / us:.1f}× |")
        seconds = 0.5 if quick else 1.0
        repeats = 1 if quick else 3
        print(f"\n## Throughput (calls/s, median of {repeats} × {seconds} s per cell)\n")
        libs = [n for n in calls if "memory" not in n and "cachetools" not in n]
        header = [
            f"{c} callers, {k} key{'s' if k > 1 else ''}"
            for k in (1, 1000)
            for c in (1, 16, 64, 1000)
        ]
        print("| library | " + " | ".join(header) + " |")
        print("|" + " --- |" * (len(header) + 1))
        rates = await throughput_table(calls, libs, seconds, repeats=1 if quick else 3)
        for name in libs:
            cells = [f"{rates[name, cell]:,.0f}" for cell in CELLS]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("\n## Invalidation latency (ms)\n")
        print("| near cache | p50 | p99 |")
        print("| --- | --- | --- |")
        n = 50 if quick else 200
        for lease, max_age in ((0.0, None), (LEASE, None), (LEASE, 0.0)):
            p50, p99 = await invalidation_latency(server.url, lease, n, max_age)
            label = "off" if not lease else f"lease {lease * 1000:.0f} ms"
            label += ", plain leases" if max_age == 0.0 else ""
            print(f"| {label} | {p50:.2f} | {p99:.2f} |")
        for close in closers:
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # a peer's own teardown: the tables above are complete
                print(f"(closing a subject failed: {exc!r})", file=sys.stderr)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main("--quick" in sys.argv))
