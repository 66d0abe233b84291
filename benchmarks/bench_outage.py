"""Outages through a fault-injection proxy (tests/support/proxy.py) between each library and
the private Redis: refused connections, and a black hole that accepts and never answers.

Per library and fault: a value (version 1) is cached; the fault starts; cached reads run for
a fixed time (latency of each, and whether any raised to the caller); a third of the way in,
the "database" moves to version 2 and the library's own invalidation runs (does it raise?);
the fault ends; reads continue and we measure how long the old version 1 is still served
(until the first read that returns version 2, and any stale read after it). Every library
has the same 50 ms socket timeout (freshcache's default), the same pool, no retries.

"stale after": reads returning version 1 after the fault ended. An invalidation that was lost
during the outage leaves version 1 in Redis until its TTL (300 s here), so the window below
is a lower bound for those libraries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.common import FaultProxy, Mode, RowResult, Table, Target, fmt, percentile
from benchmarks.libs import build_async, build_sync

LIBS = ("freshcache", "cashews", "aiocache", "naive", "dogpile")
FAULTS = ("refuse", "blackhole")
TTL = 300
ARG = 1


class _Db:
    def __init__(self) -> None:
        self.version = 1

    def row(self) -> dict[str, Any]:
        return {"version": self.version, "payload": "x" * 200}


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """On Python 3.11, asyncio.streams logs "Exception in callback" with a CancelledError when
    the proxy resets a connection whose handler task it cancels (refuse mode): noise, not a
    result. Everything else still goes to the default handler."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def _resumed(lib: str, r: dict[str, Any], mode: Mode) -> str:
    if lib != "freshcache":
        return "at once (nothing kept)"
    if r.get("resumed_s") is None:
        return f"not within {mode.heal_seconds:.1f} s (breaker cool-down 5 s)"
    return f"{r['resumed_s']:.2f} s (replayed, breaker closed)"


def _phase_record() -> dict[str, Any]:
    return {"latencies": [], "raised": 0, "reads": 0, "errors": []}


async def _call(subject: Any, record: dict[str, Any]) -> Any:
    began = time.perf_counter()
    try:
        value = subject.call(ARG)
        if subject.is_async:
            value = await value
    except Exception as exc:
        record["raised"] += 1
        if len(record["errors"]) < 3:
            record["errors"].append(f"{type(exc).__name__}: {exc}"[:120])
        value = None
    record["latencies"].append(time.perf_counter() - began)
    record["reads"] += 1
    return value


async def _invalidate(subject: Any) -> str | None:
    try:
        result = subject.invalidate(ARG)
        if asyncio.iscoroutine(result):
            await result
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:120]
    return None


async def _scenario(lib: str, fault: str, target: Any, mode: Mode) -> dict[str, Any]:
    proxy = FaultProxy(target.host, target.port).start()
    if proxy._loop is not None:  # see _quiet
        proxy._loop.call_soon_threadsafe(proxy._loop.set_exception_handler, _quiet)
    db = _Db()

    async def body(arg: Any) -> Any:
        return db.row()

    def sync_body(arg: Any) -> Any:
        return db.row()

    if lib == "dogpile":
        subject = build_sync(lib, proxy.url, sync_body, ttl=TTL, prefix=f"outage:{fault}")
    else:
        subject = build_async(lib, proxy.url, body, ttl=TTL, prefix=f"outage:{fault}")
    out: dict[str, Any] = {"during": _phase_record(), "after": _phase_record()}
    try:
        warm = _phase_record()
        for _ in range(3):
            await _call(subject, warm)
        target_client = None
        proxy.set_mode(fault)
        began = time.perf_counter()
        invalidated = False
        stale_during = 0
        while time.perf_counter() - began < mode.outage_seconds and out["during"]["reads"] < 5000:
            value = await _call(subject, out["during"])
            if not invalidated and time.perf_counter() - began >= mode.outage_seconds / 3:
                db.version = 2
                out["invalidate_error"] = await _invalidate(subject)
                invalidated = True
            elif invalidated and isinstance(value, dict) and value.get("version") == 1:
                stale_during += 1
            await asyncio.sleep(0.001)
        out["stale_during"] = stale_during
        proxy.set_mode("pass")
        healed = time.perf_counter()
        first_fresh: float | None = None
        last_stale: float | None = None
        stale_after = 0
        cache = subject.call.cache if lib == "freshcache" else None  # type: ignore[attr-defined]
        resumed: float | None = None
        while time.perf_counter() - healed < mode.heal_seconds:
            value = await _call(subject, out["after"])
            now = time.perf_counter() - healed
            if cache is not None and resumed is None:
                health = cache.health()
                if health["breaker"] == "closed" and not health["pending_invalidations"]:
                    resumed = now  # kept invalidations replayed, reads use the cache again
            version = value.get("version") if isinstance(value, dict) else None
            if version == 1:
                stale_after += 1
                last_stale = now
            elif version == 2 and first_fresh is None:
                first_fresh = now
            await asyncio.sleep(0.005)
        out["stale_after"] = stale_after
        out["resumed_s"] = resumed
        out["first_fresh_s"] = first_fresh
        out["last_stale_s"] = last_stale
        # What is left in Redis (read directly, not through the proxy): the lost invalidation.
        del target_client
    finally:
        try:
            closed = subject.close()
            if asyncio.iscoroutine(closed):
                await closed
        except Exception:
            pass
        proxy.close()
    for phase in ("during", "after"):
        lat = out[phase]["latencies"]
        out[phase]["median_ms"] = percentile(lat, 50) * 1e3
        out[phase]["p99_ms"] = percentile(lat, 99) * 1e3
        del out[phase]["latencies"]
    return out


def run(ctx: Any) -> RowResult:
    mode: Mode = ctx.mode
    ctx.admin.flushall()
    results: dict[str, dict[str, Any]] = {}
    for fault in FAULTS:
        for lib in LIBS:
            results.setdefault(lib, {})[fault] = asyncio.run(_scenario(lib, fault, ctx.redis, mode))
        print(f"   {fault} done", flush=True)
    ctx.admin.flushall()
    row = RowResult("outage")
    rows = []
    for lib in LIBS:
        for fault in FAULTS:
            r = results[lib][fault]
            d = r["during"]
            survived = r["stale_after"] == 0 and r["first_fresh_s"] is not None
            if r["stale_after"] == 0:
                stale = "0"
            elif r["first_fresh_s"] is None:
                stale = f"≥ {mode.heal_seconds:.1f} s (all {r['stale_after']} reads; until TTL)"
            else:
                stale = f"{r['last_stale_s']:.2f} s ({r['stale_after']} reads)"
            rows.append(
                [
                    lib,
                    fault,
                    f"yes ({d['raised']}/{d['reads']})" if d["raised"] else f"no (0/{d['reads']})",
                    fmt(d["median_ms"], 2),
                    fmt(d["p99_ms"], 2),
                    "raised: " + r["invalidate_error"] if r.get("invalidate_error") else "no",
                    "yes" if survived else "**no**",
                    stale,
                    _resumed(lib, r, mode),
                ]
            )
    row.tables.append(
        Table(
            "Outages (through a fault proxy): cached reads and invalidations",
            [
                "library",
                "fault",
                "read raises (raised/reads)",
                "read median ms",
                "read p99 ms",
                "invalidation raised",
                "invalidation survives",
                "stale served after the outage",
                "cache used again after",
            ],
            rows,
            [
                f"each fault lasts {mode.outage_seconds:.1f} s; stale reads watched for "
                f"{mode.heal_seconds:.1f} s after it ends; TTL {TTL} s",
                "latency: the whole cached call (the body itself is instant), so it is what the "
                "outage adds; freshcache opens its breaker after 5 consecutive failures",
                "dogpile's redis backend lets Redis errors reach the caller: reads raise",
            ],
        )
    )
    row.data = results
    fc = results["freshcache"]
    black = fc["blackhole"]["during"]["median_ms"]
    row.targets.append(
        Target(
            "outage: black-holed Redis adds ≤ 1 ms median (breaker open)",
            "≤ 1 ms",
            f"{black:.3f} ms median, p99 {fc['blackhole']['during']['p99_ms']:.1f} ms",
            black <= 1.0,
        )
    )
    stale = sum(fc[f]["stale_after"] + fc[f]["stale_during"] for f in FAULTS)
    row.targets.append(
        Target("outage: 0 stale reads after the outage (freshcache)", "0", str(stale), stale == 0)
    )
    raised = sum(fc[f]["during"]["raised"] for f in FAULTS)
    row.targets.append(
        Target(
            "outage: cached reads never raise (freshcache)", "0 raised", str(raised), raised == 0
        )
    )
    return row
