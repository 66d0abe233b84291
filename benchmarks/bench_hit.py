"""Hit path and miss + store path: µs per call (sequential) and calls/s at concurrency 1, 16, 64
(and 1,000 for errors), async and sync, every library against the same private Redis.

A round runs ``mode.calls`` calls of one library; rounds are interleaved (A B C A B C ...,
the order rotated every round), after warm-up rounds that are thrown away. Reported: median,
min and max over the measured rounds, and the ratio of medians to the floor (raw redis-py
GET + orjson decode of the same payload).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.common import PAYLOAD, Mode, RowResult, Summary, Table, Target, fmt, summarise
from benchmarks.libs import ASYNC_LIBS as _ASYNC_LIBS
from benchmarks.libs import SYNC_LIBS as _SYNC_LIBS
from benchmarks.libs import VERIFY_RATE, Subject, build_async, build_sync

CONCURRENCY = (1, 16, 64)
HEAVY_CONCURRENCY = 1000
HIT_ARG = 7
#: The hit row also shows the floor on the waiting pool freshcache uses (see the notes), and
#: freshcache with the sampled shadow read on (verify_rate=0.001): its cost on the hit path.
ASYNC_LIBS = (*_ASYNC_LIBS, "floor-blocking", "freshcache-verify")
SYNC_LIBS = (*_SYNC_LIBS, "freshcache-verify")


def _rotate(items: tuple[str, ...], r: int) -> list[str]:
    k = r % len(items)
    return [*items[k:], *items[:k]]


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def bump(self) -> None:
        with self.lock:
            self.n += 1


# ------------------------------------------------------------------------------ async


async def _seq_async(subject: Subject, calls: int, arg: Callable[[int], Any]) -> float:
    call = subject.call
    began = time.perf_counter()
    for i in range(calls):
        await call(arg(i))
    return time.perf_counter() - began


async def _conc_async(subject: Subject, calls: int, concurrency: int) -> tuple[float, int]:
    per_task = max(1, calls // concurrency)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for _ in range(per_task):
            try:
                await subject.call(HIT_ARG)
            except Exception:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return per_task * concurrency / elapsed, errors


async def _run_async(url: str, mode: Mode) -> dict[str, Any]:
    bodies = Counter()

    async def body(arg: Any) -> Any:
        bodies.bump()
        return PAYLOAD

    subjects = {lib: build_async(lib, url, body) for lib in ASYNC_LIBS}
    out: dict[str, Any] = {"hit_us": {}, "miss_us": {}, "calls_per_s": {}, "errors_1000": {}}
    try:
        for lib, subject in subjects.items():
            value = await subject.call(HIT_ARG)
            value = await subject.call(HIT_ARG)
            if value != PAYLOAD:
                raise AssertionError(f"{lib} returned a different value on a hit")
        # Sequential hits.
        samples: dict[str, list[float]] = {lib: [] for lib in subjects}
        for r in range(mode.warmup + mode.rounds):
            for lib in _rotate(ASYNC_LIBS, r):
                gc.collect()
                elapsed = await _seq_async(subjects[lib], mode.calls, lambda i: HIT_ARG)
                if r >= mode.warmup:
                    samples[lib].append(elapsed / mode.calls * 1e6)
        out["hit_us"] = {lib: summarise(v) for lib, v in samples.items()}
        # Concurrency.
        for c in CONCURRENCY[1:]:
            rates: dict[str, list[float]] = {lib: [] for lib in subjects}
            for r in range(mode.warmup + max(3, mode.rounds // 2)):
                for lib in _rotate(ASYNC_LIBS, r):
                    gc.collect()
                    rate, _ = await _conc_async(subjects[lib], mode.calls * 2, c)
                    if r >= mode.warmup:
                        rates[lib].append(rate)
            out["calls_per_s"][c] = {lib: summarise(v) for lib, v in rates.items()}
        # 1,000 concurrent callers on a warm key: errors at the caller, and bodies run.
        for lib in ASYNC_LIBS:
            before = bodies.n
            rate, errors = await _conc_async(subjects[lib], HEAVY_CONCURRENCY, HEAVY_CONCURRENCY)
            out["errors_1000"][lib] = {
                "errors": errors,
                "bodies": bodies.n - before,
                "calls_per_s": rate,
            }
        # Miss + store: every call a new argument.
        miss: dict[str, list[float]] = {lib: [] for lib in subjects}
        base = 1_000_000
        for r in range(mode.warmup + mode.rounds):
            for lib in _rotate(ASYNC_LIBS, r):
                gc.collect()
                start = base
                base += mode.calls
                calls = max(50, mode.calls // 2)
                elapsed = await _seq_async(subjects[lib], calls, lambda i, s=start: s + i)
                if r >= mode.warmup:
                    miss[lib].append(elapsed / calls * 1e6)
        out["miss_us"] = {lib: summarise(v) for lib, v in miss.items()}
    finally:
        for subject in subjects.values():
            await subject.close()
    return out


# ------------------------------------------------------------------------------ sync


def _seq_sync(subject: Subject, calls: int, arg: Callable[[int], Any]) -> float:
    call = subject.call
    began = time.perf_counter()
    for i in range(calls):
        call(arg(i))
    return time.perf_counter() - began


def _conc_sync(
    subject: Subject, calls: int, concurrency: int, pool: ThreadPoolExecutor
) -> tuple[float, int]:
    per_thread = max(1, calls // concurrency)
    start = threading.Barrier(concurrency + 1)

    def worker() -> int:
        errors = 0
        start.wait()
        for _ in range(per_thread):
            try:
                subject.call(HIT_ARG)
            except Exception:
                errors += 1
        return errors

    futures = [pool.submit(worker) for _ in range(concurrency)]
    start.wait()
    began = time.perf_counter()
    errors = sum(f.result() for f in futures)
    elapsed = time.perf_counter() - began
    return per_thread * concurrency / elapsed, errors


def _run_sync(url: str, mode: Mode) -> dict[str, Any]:
    bodies = Counter()

    def body(arg: Any) -> Any:
        bodies.bump()
        return PAYLOAD

    subjects = {lib: build_sync(lib, url, body) for lib in SYNC_LIBS}
    out: dict[str, Any] = {"hit_us": {}, "miss_us": {}, "calls_per_s": {}}
    try:
        for lib, subject in subjects.items():
            subject.call(HIT_ARG)
            if subject.call(HIT_ARG) != PAYLOAD:
                raise AssertionError(f"{lib} (sync) returned a different value on a hit")
        samples: dict[str, list[float]] = {lib: [] for lib in subjects}
        for r in range(mode.warmup + mode.rounds):
            for lib in _rotate(SYNC_LIBS, r):
                gc.collect()
                elapsed = _seq_sync(subjects[lib], mode.calls, lambda i: HIT_ARG)
                if r >= mode.warmup:
                    samples[lib].append(elapsed / mode.calls * 1e6)
        out["hit_us"] = {lib: summarise(v) for lib, v in samples.items()}
        with ThreadPoolExecutor(max(CONCURRENCY)) as pool:
            for c in CONCURRENCY[1:]:
                rates: dict[str, list[float]] = {lib: [] for lib in subjects}
                for r in range(mode.warmup + max(3, mode.rounds // 2)):
                    for lib in _rotate(SYNC_LIBS, r):
                        gc.collect()
                        rate, _ = _conc_sync(subjects[lib], mode.calls * 2, c, pool)
                        if r >= mode.warmup:
                            rates[lib].append(rate)
                out["calls_per_s"][c] = {lib: summarise(v) for lib, v in rates.items()}
        miss: dict[str, list[float]] = {lib: [] for lib in subjects}
        base = 2_000_000
        for r in range(mode.warmup + mode.rounds):
            for lib in _rotate(SYNC_LIBS, r):
                gc.collect()
                start = base
                base += mode.calls
                calls = max(50, mode.calls // 2)
                elapsed = _seq_sync(subjects[lib], calls, lambda i, s=start: s + i)
                if r >= mode.warmup:
                    miss[lib].append(elapsed / calls * 1e6)
        out["miss_us"] = {lib: summarise(v) for lib, v in miss.items()}
    finally:
        for subject in subjects.values():
            subject.close()
    return out


# ------------------------------------------------------------------------------ row


def _us_table(title: str, data: dict[str, Summary], libs: tuple[str, ...]) -> Table:
    floor = data["floor"].median
    rows = []
    for lib in libs:
        s = data[lib]
        rows.append(
            [
                lib,
                fmt(s.median),
                fmt(s.min),
                fmt(s.max),
                f"{s.median / floor:.2f}×",
                fmt(1e6 / s.median, 0),
            ]
        )
    return Table(
        title, ["library", "µs/call median", "min", "max", "× floor", "calls/s (c=1)"], rows
    )


def _rate_table(
    title: str, data: dict[int, dict[str, Summary]], seq: dict[str, Summary], libs: tuple[str, ...]
) -> Table:
    headers = ["library", "c=1 calls/s"]
    for c in CONCURRENCY[1:]:
        headers += [f"c={c} median", f"c={c} min–max", f"c={c} × floor"]
    rows = []
    for lib in libs:
        row = [lib, fmt(1e6 / seq[lib].median, 0)]
        for c in CONCURRENCY[1:]:
            s, f = data[c][lib], data[c]["floor"]
            row += [
                fmt(s.median, 0),
                f"{fmt(s.min, 0)}–{fmt(s.max, 0)}",
                f"{s.median / f.median:.2f}×",
            ]
        rows.append(row)
    return Table(
        title,
        headers,
        rows,
        [
            "calls/s: higher is better; × floor = throughput ratio",
            "cashews (protected=True, its default) coalesces concurrent calls of one key, hits "
            "included: at c>1 one GET answers many callers, so it can pass the floor",
        ],
    )


def _plot(result: dict[str, Any], path: str) -> None:
    from benchmarks.common import plot_path, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, face, libs in ((axes[0], "async", ASYNC_LIBS), (axes[1], "sync", SYNC_LIBS)):
        data = result[face]
        for lib in libs:
            ys = [1e6 / data["hit_us"][lib].median]
            ys += [data["calls_per_s"][c][lib].median for c in CONCURRENCY[1:]]
            ax.plot(CONCURRENCY, ys, marker="o", label=lib)
        ax.set_xscale("log", base=2)
        ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel("hits per second (median)")
        ax.set_title(f"Hit path throughput, {face}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path(path), dpi=110)
    plt.close(fig)


def run(ctx: Any) -> RowResult:
    mode: Mode = ctx.mode
    url = ctx.redis.url
    ctx.admin.flushall()
    result = {"async": asyncio.run(_run_async(url, mode)), "sync": _run_sync(url, mode)}
    ctx.admin.flushall()
    row = RowResult("hit")
    a, s = result["async"], result["sync"]
    row.tables.append(_us_table("Hit path, async, sequential", a["hit_us"], ASYNC_LIBS))
    row.tables[-1].notes += [
        "floor: redis-py GET + orjson.loads on redis-py's default pool (raises past its cap); "
        "floor-blocking: the same on redis-py's BlockingConnectionPool, which freshcache uses "
        "so that callers wait for a connection instead of failing",
        "every library: same server, pool of 128, 50 ms socket timeout, hiredis, no retries",
        f"freshcache-verify: freshcache with verify_rate={VERIFY_RATE} (one hit in "
        f"{round(1 / VERIFY_RATE)} recomputed in the background and compared)",
    ]
    row.tables.append(_us_table("Hit path, sync, sequential", s["hit_us"], SYNC_LIBS))
    row.tables.append(
        _rate_table(
            "Hit path, async, calls/s by concurrency", a["calls_per_s"], a["hit_us"], ASYNC_LIBS
        )
    )
    row.tables.append(
        _rate_table(
            "Hit path, sync (threads), calls/s by concurrency",
            s["calls_per_s"],
            s["hit_us"],
            SYNC_LIBS,
        )
    )
    row.tables.append(_us_table("Miss + store path, async, sequential", a["miss_us"], ASYNC_LIBS))
    row.tables.append(_us_table("Miss + store path, sync, sequential", s["miss_us"], SYNC_LIBS))
    heavy = a["errors_1000"]
    row.tables.append(
        Table(
            f"{HEAVY_CONCURRENCY} concurrent callers on a warm key "
            "(async, pool of 128 connections)",
            ["library", "errors raised", "bodies run (fallbacks)", "calls/s"],
            [
                [lib, str(v["errors"]), str(v["bodies"]), fmt(v["calls_per_s"], 0)]
                for lib, v in heavy.items()
            ],
        )
    )
    try:
        _plot(result, "hit_concurrency.png")
        row.plots.append("hit_concurrency.png")
    except Exception as exc:  # a plot must never lose the numbers
        row.tables[-1].notes.append(f"plot failed: {exc}")

    def jsonable(d: Any) -> Any:
        if isinstance(d, Summary):
            return d.as_dict()
        if isinstance(d, dict):
            return {str(k): jsonable(v) for k, v in d.items()}
        return d

    row.data = jsonable(result)
    for face, libs in (("async", ASYNC_LIBS), ("sync", SYNC_LIBS)):
        hit = result[face]["hit_us"]
        ratio = hit["freshcache"].median / hit["floor"].median
        row.targets.append(
            Target(
                f"hit path ≤ 1.10× floor ({face}, sequential)",
                "≤ 1.10×",
                f"{ratio:.2f}× ({fmt(hit['freshcache'].median)} µs vs "
                f"{fmt(hit['floor'].median)} µs)",
                ratio <= 1.10,
            )
        )
        others = [lib for lib in libs if not lib.startswith(("floor", "freshcache"))]
        slower = [lib for lib in others if hit[lib].median <= hit["freshcache"].median]
        row.targets.append(
            Target(
                f"hit path faster than every other library ({face})",
                "fastest after the floor",
                "faster than all" if not slower else f"not faster than {', '.join(slower)}",
                not slower,
            )
        )
        overhead = hit["freshcache-verify"].median / hit["freshcache"].median
        row.targets.append(
            Target(
                f"shadow reads at verify_rate={VERIFY_RATE}: hit path ≤ 1.05× without ({face})",
                "≤ 1.05×",
                f"{overhead:.2f}× ({fmt(hit['freshcache-verify'].median)} µs vs "
                f"{fmt(hit['freshcache'].median)} µs)",
                overhead <= 1.05,
            )
        )
    fc = heavy["freshcache"]
    row.targets.append(
        Target(
            "1,000 concurrent callers: 0 errors",
            "0 errors",
            f"{fc['errors']} errors, {fc['bodies']} fallbacks",
            fc["errors"] == 0,
        )
    )
    return row
