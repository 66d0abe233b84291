"""Pattern invalidation cost against keyspace size: ``booking:*`` among 10^4, 10^5, 10^6
unrelated keys (filled with DEBUG POPULATE on the private server).

Methods, all on the same server and keyspace:

- freshcache generations: ``cache.invalidate("booking:*")`` replaces one token (one SET);
- freshcache ``strategy="scan"``: the naive design, SCAN MATCH (COUNT 1000) + UNLINK;
- cashews ``delete_match``: its SCAN (COUNT 100) + UNLINK loop;
- a plain SCAN + UNLINK loop in redis-py (``scan_iter(match, count=1000)``, UNLINK per 500).

Before each repetition of a scan method, the 200 ``booking:*`` keys it deletes are written
again (not timed). After the generation bump, a read of a booking entry must miss: checked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio

from benchmarks.common import Mode, RowResult, Summary, Table, Target, fmt, summarise
from benchmarks.libs import NAMESPACE, POOL_SIZE, redis_kwargs

BOOKING_KEYS = 200
METHODS = (
    "freshcache generation",
    "freshcache strategy=scan",
    "cashews delete_match",
    "SCAN + UNLINK loop",
)


async def _plain_scan_unlink(client: Any, match: str) -> int:
    deleted, batch = 0, []
    async for key in client.scan_iter(match=match, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


async def _measure(url: str, admin: Any, size: int, mode: Mode) -> dict[str, Any]:
    from cashews import Cache as CashewsCache

    import freshcache

    host, port = (
        admin.connection_pool.connection_kwargs["host"],
        admin.connection_pool.connection_kwargs["port"],
    )
    admin.flushall()
    began = time.perf_counter()
    admin.execute_command("DEBUG", "POPULATE", size, "other")
    fill_s = time.perf_counter() - began
    # Long timeouts here: a SCAN over 10^6 keys must finish, whatever the per-call default.
    gen = freshcache.Cache.from_url(url, namespace=NAMESPACE, timeout=30, max_connections=8)
    scan = freshcache.Cache.from_url(
        url, namespace=NAMESPACE, timeout=30, max_connections=8, strategy="scan"
    )
    cashews = CashewsCache()
    cashews.setup(f"redis://{host}:{port}/0", **{**redis_kwargs(30), "max_connections": 8})
    plain = redis.asyncio.Redis(host=host, port=port, max_connections=POOL_SIZE, **redis_kwargs(30))
    computed = 0

    @gen.cached(ttl=300, key_prefix="booking:stats")
    async def stats(day: int) -> dict:  # type: ignore[type-arg]
        nonlocal computed
        computed += 1
        return {"day": day}

    out: dict[str, Any] = {"fill_seconds": fill_s, "dbsize": 0}
    try:
        for day in range(BOOKING_KEYS):  # real freshcache entries under booking:*
            await stats(day)
        out["dbsize"] = admin.dbsize()

        def refill() -> None:
            with admin.pipeline(transaction=False) as pipe:
                for i in range(BOOKING_KEYS):
                    pipe.set(f"{NAMESPACE}:booking:stats:x:{i}", b"v", ex=300)
                pipe.execute()

        timings: dict[str, list[float]] = {m: [] for m in METHODS}
        deleted: dict[str, int] = {}
        for _ in range(mode.gen_reps):
            t = time.perf_counter()
            await gen.invalidate("booking:*")
            timings["freshcache generation"].append(time.perf_counter() - t)
        before = computed
        await stats(0)
        out["generation_read_after_bump_missed"] = computed == before + 1
        scanners = {
            "freshcache strategy=scan": lambda: scan.invalidate("booking:*"),
            "cashews delete_match": lambda: cashews.delete_match(f"{NAMESPACE}:booking:*"),
            "SCAN + UNLINK loop": lambda: _plain_scan_unlink(plain, f"{NAMESPACE}:booking:*"),
        }
        for _ in range(mode.scan_reps):
            for name, invalidate in scanners.items():  # interleaved
                refill()
                t = time.perf_counter()
                await invalidate()
                timings[name].append(time.perf_counter() - t)
                left = len(
                    list(admin.scan_iter(match=f"{NAMESPACE}:booking:stats:x:*", count=10_000))
                )
                deleted[name] = BOOKING_KEYS - left
        out["timings_s"] = {m: summarise(v) for m, v in timings.items()}
        out["scan_deleted"] = deleted
    finally:
        await gen.aclose()
        await scan.aclose()
        await cashews.close()
        await plain.aclose()
        admin.flushall()
    return out


def _plot(sizes: list[int], data: dict[int, dict[str, Any]], path: str) -> None:
    from benchmarks.common import plot_path, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        ys = [data[n]["timings_s"][method].median * 1e3 for n in sizes]
        lows = [data[n]["timings_s"][method].min * 1e3 for n in sizes]
        highs = [data[n]["timings_s"][method].max * 1e3 for n in sizes]
        ax.errorbar(
            sizes,
            ys,
            yerr=[
                [y - lo for y, lo in zip(ys, lows, strict=True)],
                [hi - y for y, hi in zip(ys, highs, strict=True)],
            ],
            marker="o",
            capsize=3,
            label=method,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("unrelated keys in the database")
    ax.set_ylabel("invalidate booking:* (ms, median, min–max)")
    ax.set_title("Pattern invalidation cost against keyspace size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path(path), dpi=110)
    plt.close(fig)


def run(ctx: Any) -> RowResult:
    mode: Mode = ctx.mode
    data: dict[int, dict[str, Any]] = {}
    for size in mode.keyspaces:
        print(f"   keyspace {size:,}", flush=True)
        data[size] = asyncio.run(_measure(ctx.redis.url, ctx.admin, size, mode))
    sizes = list(data)
    row = RowResult("invalidate")
    headers = ["method"] + [f"{n:,} keys: ms median (min–max)" for n in sizes]
    rows = []
    for method in METHODS:
        cells = [method]
        for n in sizes:
            s: Summary = data[n]["timings_s"][method]
            cells.append(f"{fmt(s.median * 1e3, 3)} ({fmt(s.min * 1e3, 3)}–{fmt(s.max * 1e3, 3)})")
        rows.append(cells)
    gen_top = data[sizes[-1]]["timings_s"]["freshcache generation"].median
    ratio_row = ["× generation (median)"]
    for n in sizes:
        g = data[n]["timings_s"]["freshcache generation"].median
        scan = data[n]["timings_s"]["SCAN + UNLINK loop"].median
        ratio_row.append(f"SCAN+UNLINK {scan / g:,.0f}×")
    rows.append(ratio_row)
    notes = [
        f"repetitions: generation {mode.gen_reps} per size, scan methods {mode.scan_reps} per "
        f"size (interleaved); {BOOKING_KEYS} booking:* keys among the unrelated ones",
        "deleted by each scan method (of "
        f"{BOOKING_KEYS}): "
        + ", ".join(f"{k} {v}" for k, v in data[sizes[-1]]["scan_deleted"].items()),
        "after the generation bump a read of a booking entry missed: "
        + ", ".join(f"{n:,}: {data[n]['generation_read_after_bump_missed']}" for n in sizes),
        "fill (DEBUG POPULATE): "
        + ", ".join(f"{n:,}: {data[n]['fill_seconds']:.2f} s" for n in sizes),
    ]
    row.tables.append(Table("Invalidate booking:* against keyspace size", headers, rows, notes))
    try:
        _plot(sizes, data, "invalidate_keyspace.png")
        row.plots.append("invalidate_keyspace.png")
    except Exception as exc:
        notes.append(f"plot failed: {exc}")
    row.data = {
        str(n): {
            **{k: v for k, v in d.items() if k != "timings_s"},
            "timings_s": {m: s.as_dict() for m, s in d["timings_s"].items()},
        }
        for n, d in data.items()
    }
    top = sizes[-1]
    scan_top = data[top]["timings_s"]["SCAN + UNLINK loop"].median
    row.targets.append(
        Target(
            f"generation invalidation ≥ 1,000× cheaper than SCAN + UNLINK at {top:,} keys",
            "≥ 1,000×",
            f"{scan_top / gen_top:,.0f}× ({fmt(gen_top * 1e6)} µs vs {fmt(scan_top * 1e3)} ms)",
            scan_top / gen_top >= 1000,
        )
    )
    gens = [data[n]["timings_s"]["freshcache generation"].median for n in sizes]
    spread = max(gens) / min(gens)
    row.targets.append(
        Target(
            f"generation invalidation flat from {sizes[0]:,} to {top:,} keys",
            "within 2×",
            f"{spread:.2f}× (" + ", ".join(f"{g * 1e6:.0f} µs" for g in gens) + ")",
            spread <= 2,
        )
    )
    return row
