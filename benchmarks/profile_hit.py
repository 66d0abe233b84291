#!/usr/bin/env python3
"""Where freshcache's async hit path spends its time, against the floor's.

    .venv/bin/python benchmarks/profile_hit.py            # decomposition table
    .venv/bin/python benchmarks/profile_hit.py --profile  # plus a pyinstrument CPU profile

1. Client variants of the floor on the same private Redis (interleaved rounds): redis-py's
   plain ``ConnectionPool`` vs the ``BlockingConnectionPool`` freshcache uses (so that 1,000
   callers wait instead of failing), GET vs the MGET of the entry plus its token keys, and a
   plain pool behind an ``asyncio.Semaphore`` (a cheap way to wait for a connection).
2. freshcache's own CPU per hit, with the backend replaced by an in-process stub that answers
   at once: the cost of key building, judging, decoding and counting, without any I/O.
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

import orjson  # noqa: E402
import redis.asyncio  # noqa: E402

from benchmarks.common import PAYLOAD, POOL_SIZE, SOCKET_TIMEOUT, start_redis  # noqa: E402
from benchmarks.libs import build_async  # noqa: E402
from freshcache.backends import EntryKeys  # noqa: E402

Case = Callable[[], Awaitable[Any]]


async def _measure(cases: dict[str, Case], calls: int, rounds: int, warmup: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(warmup + rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = cases[name]
            gc.collect()
            began = time.perf_counter()
            for _ in range(calls):
                await fn()
            if r >= warmup:
                samples[name].append((time.perf_counter() - began) / calls * 1e6)
    return {n: (statistics.median(v), min(v)) for n, v in samples.items()}


class _StubBackend:
    """Answers get_many from a dict, at once: freshcache's CPU without the network."""

    def __init__(self, values: dict[str, bytes | None]) -> None:
        self.values = values

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        return [self.values.get(k) for k in keys.fetch]


async def main(profile: bool) -> None:
    server = start_redis()
    try:
        host, port = server.host, server.port
        common = {"socket_timeout": SOCKET_TIMEOUT, "health_check_interval": 0}
        plain = redis.asyncio.Redis(host=host, port=port, max_connections=POOL_SIZE, **common)
        blocking = redis.asyncio.Redis.from_pool(
            redis.asyncio.BlockingConnectionPool(
                host=host, port=port, max_connections=POOL_SIZE, timeout=1.0, **common
            )
        )
        gate = asyncio.Semaphore(POOL_SIZE)
        await plain.set("floor", orjson.dumps(PAYLOAD))

        async def body(arg: Any) -> Any:
            return PAYLOAD

        fc = build_async("freshcache", server.url, body)
        await fc.call(7)
        await fc.call(7)
        fetch = fc.keys(7)

        async def get_plain() -> Any:
            return orjson.loads(await plain.get("floor"))

        async def get_blocking() -> Any:
            return orjson.loads(await blocking.get("floor"))

        async def get_gated() -> Any:
            async with gate:
                return orjson.loads(await plain.get("floor"))

        async def mget_plain() -> Any:
            return await plain.execute_command("MGET", *fetch)

        async def mget_blocking() -> Any:
            return await blocking.execute_command("MGET", *fetch)

        async def freshcache_hit() -> Any:
            return await fc.call(7)

        cases: dict[str, Case] = {
            "floor: GET + orjson, plain pool": get_plain,
            "floor: GET + orjson, blocking pool": get_blocking,
            "GET + orjson, plain pool + semaphore": get_gated,
            f"MGET {len(fetch)} keys, plain pool": mget_plain,
            f"MGET {len(fetch)} keys, blocking pool": mget_blocking,
            "freshcache hit (as shipped)": freshcache_hit,
        }
        results = await _measure(cases, 300, 40, 4)
        base = results["floor: GET + orjson, plain pool"]
        print("\n| client path (async, sequential) | µs/call median | min | × floor (median) |")
        print("| --- | --- | --- | --- |")
        for name, (med, low) in results.items():
            print(f"| {name} | {med:.1f} | {low:.1f} | {med / base[0]:.2f}× |")

        # freshcache's own CPU: the same hit with the backend stubbed out.
        cache = fc.call.cache  # type: ignore[attr-defined]
        raw = await plain.execute_command("MGET", *fetch)
        stub = _StubBackend(dict(zip(fetch, raw, strict=True)))
        real, _ = cache.backends.use(async_backend=stub)

        async def stub_floor() -> Any:
            (value,) = await stub.get_many(EntryKeys.of("floor"))
            return orjson.loads(value) if value else None

        stub.values["floor"] = orjson.dumps(PAYLOAD)
        spec = fc.call.spec  # type: ignore[attr-defined]
        counters = cache.metrics.for_prefix(spec.prefix_label)

        async def locate_only() -> Any:
            return cache.engine.locate(spec, (7,), {})

        async def judge_only() -> Any:
            return cache.engine.rules.judge(spec, raw, counters)

        async def observe_only() -> Any:
            counters.observe(0.0001)

        cpu = await _measure(
            {
                "stub GET + orjson (the floor's CPU)": stub_floor,
                "freshcache hit, stub backend": freshcache_hit,
                "  spec.locate (bind, encode, blake2b, key)": locate_only,
                "  rules.judge (stamp, startswith, orjson)": judge_only,
                "  counters.observe (histogram)": observe_only,
            },
            2000,
            20,
            3,
        )
        print("\n| freshcache CPU per hit (no I/O) | µs/call median | min |")
        print("| --- | --- | --- |")
        for name, (med, low) in cpu.items():
            print(f"| {name} | {med:.2f} | {low:.2f} |")
        _sync_section(server, fetch)
        await _paths_section()
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            for _ in range(50_000):
                await fc.call(7)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=True))
        cache.backends.use(async_backend=real)
        await fc.close()
        await plain.aclose()
        await blocking.aclose()
    finally:
        server.stop()


class _PathStub:
    """A backend that answers at once: tokens exist, every store succeeds, bumps do nothing."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        return [self.entries.get(keys.entry), *(b"0123456789abcdef01234567" for _ in keys.tokens)]

    async def store_if_unchanged(self, keys: EntryKeys, value: bytes, *rest: Any) -> bool:
        return True

    async def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        return None

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        return None

    async def delete(self, keys: list[str]) -> int:
        return 0

    async def create_tokens(
        self, keys: EntryKeys, missing: list[str], fresh: list[bytes], ttl_ms: int
    ) -> list[bytes]:
        return list(fresh)


async def _paths_section() -> None:
    """CPU of freshcache's miss and invalidation machinery, backend stubbed (no I/O), next to
    the naive decorator's equivalent work (json + BLAKE2b + SET / DEL, also stubbed)."""
    import hashlib
    import json

    import freshcache

    cache = freshcache.Cache.from_url("redis://127.0.0.1:1/0", namespace="p")
    cache.backends.use(async_backend=_PathStub())  # type: ignore[arg-type]
    nosf = freshcache.Cache.from_url("redis://127.0.0.1:1/0", namespace="q")
    nosf.backends.use(async_backend=_PathStub())  # type: ignore[arg-type]
    value = {"id": 1, "version": 1}

    @cache.cached(ttl=60, key_prefix="rows:{row_id}")
    async def read(row_id: int) -> dict[str, int]:
        return value

    @nosf.cached(ttl=60, key_prefix="rows:{row_id}", single_flight=False)
    async def read_nosf(row_id: int) -> dict[str, int]:
        return value

    @cache.invalidate_cache("rows:{row_id}:*")
    async def write(row_id: int) -> int:
        return 1

    stub = _PathStub()

    async def naive_miss() -> None:
        key = f"p:rows:read:{hashlib.blake2b(repr((7,)).encode(), digest_size=8).hexdigest()}"
        await stub.get_many(EntryKeys.of(key))
        await stub.set(key, json.dumps(value).encode(), 60_000)

    async def naive_write() -> None:
        await stub.delete([f"p:rows:{7}"])

    cases: dict[str, Case] = {
        "miss + store: freshcache (single-flight)": lambda: read(7),
        "miss + store: freshcache, single_flight=False": lambda: read_nosf(7),
        "miss + store: naive (json, blake2b, GET, SET)": naive_miss,
        "invalidate: @invalidate_cache write": lambda: write(7),
        "invalidate: cache.invalidate('rows:7:*')": lambda: cache.invalidate("rows:7:*"),
        "invalidate: naive DEL": naive_write,
    }
    results = await _measure(cases, 2000, 20, 3)
    print("\n| freshcache CPU per miss / invalidation (no I/O) | µs/call median | min |")
    print("| --- | --- | --- |")
    for name, (med, low) in results.items():
        print(f"| {name} | {med:.2f} | {low:.2f} |")


def _sync_section(server: Any, fetch: list[str]) -> None:
    """The same decomposition for the sync path (redis-py's sync pools are queue-based)."""
    import redis

    common = {"socket_timeout": SOCKET_TIMEOUT, "health_check_interval": 0}
    host, port = server.host, server.port
    plain = redis.Redis(host=host, port=port, max_connections=POOL_SIZE, **common)
    blocking = redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            host=host, port=port, max_connections=POOL_SIZE, timeout=1.0, **common
        )
    )
    plain.set("floor", orjson.dumps(PAYLOAD))

    def body(arg: Any) -> Any:
        return PAYLOAD

    from benchmarks.libs import build_sync

    fc = build_sync("freshcache", server.url, body)
    fc.call(7)
    fc.call(7)
    sync_fetch = fc.keys(7)
    cases: dict[str, Callable[[], Any]] = {
        "floor: GET + orjson, plain pool": lambda: orjson.loads(plain.get("floor")),
        "floor: GET + orjson, blocking pool": lambda: orjson.loads(blocking.get("floor")),
        f"MGET {len(sync_fetch)} keys, plain pool": lambda: plain.execute_command(
            "MGET", *sync_fetch
        ),
        f"MGET {len(sync_fetch)} keys, blocking pool": lambda: blocking.execute_command(
            "MGET", *sync_fetch
        ),
        "freshcache hit (as shipped)": lambda: fc.call(7),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(44):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = cases[name]
            gc.collect()
            began = time.perf_counter()
            for _ in range(300):
                fn()
            if r >= 4:
                samples[name].append((time.perf_counter() - began) / 300 * 1e6)
    base = statistics.median(samples["floor: GET + orjson, plain pool"])
    print("\n| client path (sync, sequential) | µs/call median | min | × floor (median) |")
    print("| --- | --- | --- | --- |")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {min(values):.1f} | {med / base:.2f}× |")
    # freshcache's own CPU on the sync path, backend stubbed.
    cache = fc.call.cache  # type: ignore[attr-defined]
    raw = plain.execute_command("MGET", *sync_fetch)
    stored = dict(zip(sync_fetch, raw, strict=True))
    stored["floor"] = orjson.dumps(PAYLOAD)

    class Stub:
        def get_many(self, keys: EntryKeys) -> list[bytes | None]:
            return [stored.get(k) for k in keys.fetch]

    stub = Stub()
    _, real = cache.backends.use(sync_backend=stub)
    floor_keys = EntryKeys.of("floor")
    cpu = {
        "stub GET + orjson (the floor's CPU)": lambda: orjson.loads(stub.get_many(floor_keys)[0]),
        "freshcache hit, stub backend": lambda: fc.call(7),
    }
    cpu_samples: dict[str, list[float]] = {name: [] for name in cpu}
    for r in range(23):
        for name, fn in cpu.items():
            began = time.perf_counter()
            for _ in range(2000):
                fn()
            if r >= 3:
                cpu_samples[name].append((time.perf_counter() - began) / 2000 * 1e6)
    print("\n| freshcache CPU per sync hit (no I/O) | µs/call median | min |")
    print("| --- | --- | --- |")
    for name, values in cpu_samples.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} |")
    cache.backends.use(sync_backend=real)
    fc.close()
    plain.close()
    blocking.close()


if __name__ == "__main__":
    asyncio.run(main("--profile" in sys.argv))
