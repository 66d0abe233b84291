#!/usr/bin/env python3
"""Redis Cluster against standalone Redis: µs per hit and per invalidation, and what each one
sends on the wire. Starts its own servers (a redis-server and a 3 primaries + 3 replicas
cluster, private, on free loopback ports, via tests/support/servers.py), prints a Markdown table.

    .venv/bin/python benchmarks/cluster_bench.py            # ~1 minute
    .venv/bin/python benchmarks/cluster_bench.py --rounds 30 --hits 5000

Cases: standalone ``redis://``; ``redis+cluster://`` with the default 16 shards, with 64 (an
invalidation writes one token copy per shard), and with ``wait_replicas=0`` (no WAIT for the
replicas' acknowledgement: what that durability costs). Each in its async and sync face.

A hit cycles over 64 arguments, so hits spread over the shards and nodes as real traffic does.
An invalidation is a generation bump (``invalidate("bench:*")``). Rounds are interleaved (every
case once per round, the order rotated), warm-up rounds are thrown away, and the table shows
the median of the per-round means, with min–max. Commands are counted with INFO commandstats
summed over the primaries.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `benchmarks` and `tests.support` as packages

import redis  # noqa: E402
from tests.support.servers import (  # noqa: E402
    RedisCluster,
    RedisServer,
    redis_server_version,
    start_redis_cluster,
)

from benchmarks.common import PAYLOAD, Table, command_calls, fmt, summarise  # noqa: E402
from freshcache import Cache  # noqa: E402

ARGS = 64  # distinct cached calls: spread over the shards
PATTERN = "bench:*"


@dataclasses.dataclass
class Case:
    name: str
    url: str
    nodes: list[tuple[str, int]]  # where commands are counted (the primaries)
    cache: Cache = dataclasses.field(init=False)
    read: Any = None
    read_sync: Any = None
    hit_us: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {"async": [], "sync": []}
    )
    invalidate_us: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {"async": [], "sync": []}
    )
    wire: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cache = Cache.from_url(self.url, namespace="bench", timeout=1.0)

        @self.cache.cached(ttl=600, key_prefix="bench:stats")
        async def read(n: int) -> dict[str, Any]:
            return {**PAYLOAD, "n": n}

        @self.cache.cached(ttl=600, key_prefix="bench:stats")
        def read_sync(n: int) -> dict[str, Any]:
            return {**PAYLOAD, "n": n}

        self.read, self.read_sync = read, read_sync


# ------------------------------------------------------------------------------ timing


async def warm(case: Case) -> None:
    for n in range(ARGS):
        await case.read(n)
        case.read_sync(n)


async def hit_round(case: Case, calls: int) -> float:
    read = case.read
    began = time.perf_counter()
    for i in range(calls):
        await read(i % ARGS)
    return (time.perf_counter() - began) / calls * 1e6


def hit_round_sync(case: Case, calls: int) -> float:
    read = case.read_sync
    began = time.perf_counter()
    for i in range(calls):
        read(i % ARGS)
    return (time.perf_counter() - began) / calls * 1e6


async def invalidate_round(case: Case, calls: int) -> float:
    invalidate = case.cache.invalidate
    began = time.perf_counter()
    for _ in range(calls):
        await invalidate(PATTERN)
    return (time.perf_counter() - began) / calls * 1e6


def invalidate_round_sync(case: Case, calls: int) -> float:
    invalidate = case.cache.invalidate_sync
    began = time.perf_counter()
    for _ in range(calls):
        invalidate(PATTERN)
    return (time.perf_counter() - began) / calls * 1e6


# ------------------------------------------------------------------------------ wire


def commandstats(case: Case) -> dict[tuple[str, int], dict[str, int]]:
    out = {}
    for host, port in case.nodes:
        client = redis.Redis(host=host, port=port)
        out[host, port] = command_calls(client)
        client.close()
    return out


def per_node_delta(
    before: dict[tuple[str, int], dict[str, int]], after: dict[tuple[str, int], dict[str, int]]
) -> dict[tuple[str, int], collections.Counter[str]]:
    ignore = {"info", "replconf", "cluster", "command", "ping"}  # ours, or the replicas'
    out = {}
    for node, counts in after.items():
        diff = collections.Counter(
            {k: v - before[node].get(k, 0) for k, v in counts.items() if k not in ignore}
        )
        out[node] = +diff
    return out


async def measure_wire(case: Case, hits: int = 640, invalidations: int = 50) -> None:
    """Commands per hit and per invalidation, and how many nodes each one touches."""
    await warm(case)
    before = commandstats(case)
    for i in range(hits):
        await case.read(i % ARGS)
    delta = per_node_delta(before, commandstats(case))
    total = sum(sum(c.values()) for c in delta.values())
    case.wire["commands/hit"] = total / hits
    case.wire["mget/hit"] = sum(c["mget"] for c in delta.values()) / hits

    before = commandstats(case)
    for _ in range(invalidations):
        await case.cache.invalidate(PATTERN)
    delta = per_node_delta(before, commandstats(case))
    case.wire["set/invalidation"] = sum(c["set"] for c in delta.values()) / invalidations
    case.wire["wait/invalidation"] = sum(c["wait"] for c in delta.values()) / invalidations
    case.wire["nodes/invalidation"] = sum(1 for c in delta.values() if c["set"]) * 1.0


# ------------------------------------------------------------------------------ main


def build_cases(standalone: RedisServer, cluster: RedisCluster) -> list[Case]:
    primaries = cluster.primaries()
    return [
        Case("standalone redis://", standalone.url, [(standalone.host, standalone.port)]),
        Case("cluster, 16 shards", cluster.url, primaries),
        Case("cluster, 64 shards", cluster.url + "?shards=64", primaries),
        Case("cluster, 16 shards, wait_replicas=0", cluster.url + "?wait_replicas=0", primaries),
    ]


async def run(rounds: int, warmup: int, hits: int, invalidations: int) -> list[Case]:
    standalone = RedisServer()
    standalone.start()
    cluster = start_redis_cluster()
    try:
        cases = build_cases(standalone, cluster)
        for case in cases:
            await measure_wire(case)
        for r in range(warmup + rounds):
            k = r % len(cases)
            for case in cases[k:] + cases[:k]:
                await warm(case)
                hit = await hit_round(case, hits)
                hit_sync = hit_round_sync(case, hits)
                inv = await invalidate_round(case, invalidations)
                inv_sync = invalidate_round_sync(case, invalidations)
                if r >= warmup:
                    case.hit_us["async"].append(hit)
                    case.hit_us["sync"].append(hit_sync)
                    case.invalidate_us["async"].append(inv)
                    case.invalidate_us["sync"].append(inv_sync)
        for case in cases:
            await case.cache.aclose()
        return cases
    finally:
        cluster.stop()
        standalone.stop()


def spread(values: list[float]) -> str:
    s = summarise(values)
    return f"{fmt(s.median)} ({fmt(s.min)}–{fmt(s.max)})"


def table(cases: list[Case], rounds: int, hits: int, invalidations: int) -> Table:
    rows = []
    for case in cases:
        for face in ("async", "sync"):
            rows.append(
                [
                    case.name,
                    face,
                    spread(case.hit_us[face]),
                    spread(case.invalidate_us[face]),
                    fmt(case.wire["commands/hit"], 2),
                    fmt(case.wire["mget/hit"], 2),
                    f"{fmt(case.wire['set/invalidation'], 0)} SET + "
                    f"{fmt(case.wire['wait/invalidation'], 0)} WAIT",
                    fmt(case.wire["nodes/invalidation"], 0),
                ]
            )
    return Table(
        "Redis Cluster vs standalone: hit and invalidation",
        [
            "backend",
            "face",
            "µs per hit",
            "µs per invalidation",
            "commands per hit",
            "MGET per hit",
            "commands per invalidation",
            "nodes per invalidation",
        ],
        rows,
        [
            f"median of {rounds} interleaved rounds (min–max); {hits} hits and {invalidations} "
            f"generation invalidations per round and case; hits cycle over {ARGS} cached calls",
            "every hit is one MGET on one node; an invalidation is one pipeline per primary "
            "(async: in parallel; sync: one after the other), WAIT included in it",
            f"loopback, {os.cpu_count()} CPUs, redis-server {redis_server_version()}, "
            f"Python {sys.version.split()[0]}, redis-py {redis.__version__}; all servers and "
            "this process share the CPUs",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--invalidations", type=int, default=300)
    args = parser.parse_args()
    cases = asyncio.run(run(args.rounds, args.warmup, args.hits, args.invalidations))
    print(table(cases, args.rounds, args.hits, args.invalidations).markdown())


if __name__ == "__main__":
    main()
