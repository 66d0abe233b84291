#!/usr/bin/env python3
"""The near cache's write-side cost against the number of processes holding the key (issue 13).

    .venv/bin/python benchmarks/near_writes.py [--quick]

On one private Redis, for N = 0, 1, 2, 4 and 8 reader processes (``spawn``), each with its own
``Cache`` of one namespace, reading one hot key in a loop (an async cached function, a pause
of ``PAUSE`` seconds between reads) so that every one of them holds a near entry for it, the
parent process is the writer. It changes the key's source value (a plain Redis key outside the
namespace, the "database") and then invalidates, alternately by prefix
(``await cache.invalidate("k:*")``) and by exact key (``await item.invalidate(1)``), timing
each call. Three settings per N:

- near off (``near_lease=0`` in every process);
- near on (``near_lease=0.05``), the push on (as shipped);
- near on with the writer's push switched off (its publish replaced by a no-op): only the
  commit-wait is left, which is what correctness rests on.

It reports per setting and N: the invalidation call's p50/p99/max (ms) for each kind; how long
after the invalidation was acknowledged by Redis (the time the near cache itself takes, read
from the writer's ``NearIO.dropped``; with the near cache off, from the call's return) each
reader first returned the new value, p50/p99 (readers stamp it with ``time.monotonic``,
CLOCK_MONOTONIC, which all processes of one machine share); and the stale reads: reads that
began after an invalidation had returned and still returned an older value (must be 0).

The observation times have the resolution of the readers' pause plus their scheduling on a
busy machine; the writer waits until every reader has seen the new value and holds a near
entry again (or two seconds) before the next invalidation, plus a random 5-15 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import multiprocessing as mp
import multiprocessing.sharedctypes as mpc
import platform
import queue
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

import freshcache  # noqa: E402
from benchmarks.common import RESULTS, percentile, start_redis  # noqa: E402

LEASE = 0.05
#: Seconds a reader sleeps between two reads: bounds the readers' CPU on a 2-core machine
#: (8 of them in a tight loop would starve the writer), and is the observations' resolution.
PAUSE = 0.0005
PREFIX = "k"
ITEM = 1
READERS = (0, 1, 2, 4, 8)
#: Slots of the control array shared with the readers.
COMMITTED, STOP = 0, 1
#: Seconds the writer waits for the readers to catch up before the next invalidation.
CATCH_UP = 2.0
START_UP = 120.0  # spawning 8 interpreters on a loaded 2-core machine takes a while
RESULT_FILE = RESULTS / "near-writes.md"

Shared = Any  # a multiprocessing RawArray (its ctypes type is not expressible statically)


def bind(cache: freshcache.Cache, source: aioredis.Redis, source_key: str) -> Any:
    """The cached function every process uses; defined here so its qualname (part of the
    key) is the same in the writer and in every reader."""

    @cache.cached(ttl=300, key_prefix=PREFIX)
    async def item(item_id: int) -> int:
        raw = await source.get(f"{source_key}:{item_id}")
        return int(raw or 0)

    return item


def cache_options(lease: float) -> dict[str, Any]:
    return {"near_lease": lease} if lease else {}


# ------------------------------------------------------------------------------- readers


@dataclasses.dataclass
class ReaderReport:
    """What one reader saw, sent back to the writer when it stops."""

    first_seen: dict[int, float]  # version -> monotonic time it was first returned
    pushes: list[float]  # monotonic times a push from the writer arrived (near on)
    stale: list[tuple[int, int]]  # (committed version, value returned) of stale reads
    reads: int
    near_hits: int
    push_drops: int
    errors: int


def reader_main(
    index: int,
    url: str,
    namespace: str,
    lease: float,
    source_key: str,
    control: Shared,
    seen: Shared,
    held: Shared,
    reports: mp.Queue[ReaderReport],
) -> None:
    """A reader process's entry point (spawned: everything it needs comes as arguments)."""
    report = asyncio.run(_read_loop(index, url, namespace, lease, source_key, control, seen, held))
    reports.put(report)


async def _read_loop(
    index: int,
    url: str,
    namespace: str,
    lease: float,
    source_key: str,
    control: Shared,
    seen: Shared,
    held: Shared,
) -> ReaderReport:
    cache = freshcache.Cache.from_url(url, namespace=namespace, **cache_options(lease))
    source = aioredis.Redis.from_url(url)
    item = bind(cache, source, source_key)
    # Internal, read only: whether this process holds the (only) near entry right now, so
    # that the writer invalidates only once every reader holds one.
    near = cache.engine.near
    pushes = record_pushes(cache)
    first_seen: dict[int, float] = {}
    stale: list[tuple[int, int]] = []
    last = reads = 0
    try:
        while not control[STOP]:
            # Read before the call starts: the invalidation of this version had returned.
            committed = control[COMMITTED]
            value = await item(ITEM)
            now = time.monotonic()
            reads += 1
            if value < committed:
                stale.append((committed, value))
            while last < value:  # a skipped version counts as first seen now, too
                last += 1
                first_seen[last] = now
            seen[index] = last
            held[index] = 1 if near is None or len(near) else 0
            await asyncio.sleep(PAUSE)
        stats = list(cache.stats().values())
        return ReaderReport(
            first_seen,
            pushes,
            stale,
            reads,
            sum(s.near_hits for s in stats),
            sum(s.near_push_drops for s in stats),
            sum(s.errors for s in stats),
        )
    finally:
        await source.aclose()
        await cache.aclose()


def record_pushes(cache: freshcache.Cache) -> list[float]:
    """Benchmark-only hook: the arrival time of every push this process receives (taken on
    the subscriber thread, before the entries are dropped)."""
    arrivals: list[float] = []
    near_io = cache.engine.near_io
    if near_io is None:
        return arrivals
    deliver = near_io.push.on_message

    def on_message(patterns: list[tuple[str, list[str]]]) -> None:
        arrivals.append(time.monotonic())
        deliver(patterns)

    near_io.push.on_message = on_message
    return arrivals


# ------------------------------------------------------------------------------- writer


@dataclasses.dataclass(frozen=True)
class Setting:
    label: str
    lease: float
    push: bool


SETTINGS = (
    Setting("off", 0.0, False),
    Setting(f"lease {LEASE * 1000:.0f} ms, push on", LEASE, True),
    Setting(f"lease {LEASE * 1000:.0f} ms, push off", LEASE, False),
)


@dataclasses.dataclass
class Invalidation:
    kind: str  # "prefix" or "exact"
    version: int
    seconds: float  # the call's duration
    acked: float | None  # monotonic time Redis acknowledged it (near on only)
    returned: float  # monotonic time the call returned
    holding: int  # readers holding a near entry just before it


@dataclasses.dataclass
class Case:
    setting: Setting
    readers: int
    invalidations: list[Invalidation]
    reports: list[ReaderReport]
    missing_reports: int
    writer_errors: int


class Readers:
    """The reader processes of one case, and the memory they share with the writer."""

    def __init__(self, count: int, url: str, namespace: str, lease: float, source_key: str):
        ctx = mp.get_context("spawn")
        self.control = mpc.RawArray("q", 2)
        self.seen = mpc.RawArray("q", max(count, 1))
        self.held = mpc.RawArray("b", max(count, 1))
        self.count = count
        self.reports: mp.Queue[ReaderReport] = ctx.Queue()
        self.processes = [
            ctx.Process(
                target=reader_main,
                args=(i, url, namespace, lease, source_key, *self.shared(), self.reports),
                name=f"near-writes-reader-{i}",
                daemon=True,
            )
            for i in range(count)
        ]

    def shared(self) -> tuple[Shared, Shared, Shared]:
        return self.control, self.seen, self.held

    def start(self, version: int) -> None:
        self.control[COMMITTED] = version
        for process in self.processes:
            process.start()

    def caught_up(self, version: int) -> bool:
        """Every reader has returned ``version`` (or later) and holds a near entry."""
        alive = all(p.is_alive() for p in self.processes)
        return alive and all(self.seen[i] >= version and self.held[i] for i in range(self.count))

    def holding(self) -> int:
        return sum(1 for i in range(self.count) if self.held[i])

    def stop(self) -> tuple[list[ReaderReport], int]:
        """Stop every reader, collect the reports, and make sure none is left running."""
        self.control[STOP] = 1
        reports: list[ReaderReport] = []
        deadline = time.monotonic() + 20.0
        alive = [p for p in self.processes if p.pid is not None]
        while len(reports) < len(alive) and time.monotonic() < deadline:
            try:
                reports.append(self.reports.get(timeout=0.5))
            except queue.Empty:
                if not any(p.is_alive() for p in alive):
                    break
        for process in alive:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)
        self.reports.close()
        return reports, len(alive) - len(reports)


async def wait_until(ready: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def record_acks(cache: freshcache.Cache, push: bool) -> list[float]:
    """Benchmark-only hooks into the writer's near cache: the acknowledgement time of each
    invalidation (what ``dropped`` returns), and, for ``push=False``, no publication."""
    acks: list[float] = []
    near_io = cache.engine.near_io
    if near_io is None:
        return acks
    original = near_io.dropped

    def dropped(patterns: Any) -> tuple[float, list[str]]:
        acked, labels = original(patterns)
        acks.append(acked)
        return acked, labels

    near_io.dropped = dropped  # type: ignore[method-assign]
    if not push:
        near_io.push.publish = lambda patterns: None  # type: ignore[method-assign]
    return acks


async def run_case(url: str, setting: Setting, count: int, invalidations: int) -> Case:
    namespace = f"near-writes-{setting.lease}-{int(setting.push)}-{count}"
    source_base = f"near-writes-source:{namespace}"  # outside the namespace: the "database"
    source_key = f"{source_base}:{ITEM}"
    source = aioredis.Redis.from_url(url)
    await source.set(source_key, 1)
    readers = Readers(count, url, namespace, setting.lease, source_base)
    cache = freshcache.Cache.from_url(url, namespace=namespace, **cache_options(setting.lease))
    item = bind(cache, source, source_base)
    acks = record_acks(cache, setting.push)

    async def invalidate(kind: str) -> float:
        began = time.perf_counter()
        if kind == "prefix":
            await cache.invalidate(f"{PREFIX}:*")
        else:
            await item.invalidate(ITEM)
        return time.perf_counter() - began

    done: list[Invalidation] = []
    try:
        readers.start(1)
        if not await wait_until(lambda: readers.caught_up(1), START_UP):
            raise RuntimeError(f"{count} readers did not start within {START_UP} s")
        for kind in ("prefix", "exact"):  # warm-up, not counted: the first publish connects
            await invalidate(kind)
            await wait_until(lambda: readers.caught_up(1), CATCH_UP)
        for i in range(invalidations):
            version = i + 2
            await wait_until(functools.partial(readers.caught_up, version - 1), CATCH_UP)
            await asyncio.sleep(random.uniform(0.005, 0.015))
            holding = readers.holding()
            await source.set(source_key, version)
            kind = "prefix" if i % 2 == 0 else "exact"
            before = len(acks)
            seconds = await invalidate(kind)
            returned = time.monotonic()
            readers.control[COMMITTED] = version  # reads that start from now on must see it
            acked = acks[-1] if len(acks) > before else None
            done.append(Invalidation(kind, version, seconds, acked, returned, holding))
        await wait_until(lambda: readers.caught_up(invalidations + 1), CATCH_UP)
    finally:
        reports, missing = readers.stop()
        writer_errors = sum(s.errors for s in cache.stats().values())
        await cache.aclose()
        await source.delete(source_key)
        await source.aclose()
    return Case(setting, count, done, reports, missing, writer_errors)


# ------------------------------------------------------------------------------- summaries


def ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.2f}" if values else "—"


def latencies(case: Case, kind: str) -> list[float]:
    return [inv.seconds for inv in case.invalidations if inv.kind == kind]


def push_delays(case: Case) -> list[float]:
    """Seconds from each acknowledgement to the first push each reader received after it
    (before the next acknowledgement)."""
    acks = [inv.acked for inv in case.invalidations if inv.acked is not None]
    delays: list[float] = []
    for report in case.reports:
        arrivals = sorted(report.pushes)
        for i, acked in enumerate(acks):
            until = acks[i + 1] if i + 1 < len(acks) else float("inf")
            first = next((t for t in arrivals if acked <= t < until), None)
            if first is not None:
                delays.append(first - acked)
    return delays


def deliveries(case: Case) -> tuple[list[float], int]:
    """Seconds from each invalidation's acknowledgement (near off: its return) to each
    reader's first read of the new value; and how many came before the call returned."""
    delays: list[float] = []
    early = 0
    for inv in case.invalidations:
        start = inv.acked if inv.acked is not None else inv.returned
        for report in case.reports:
            seen = report.first_seen.get(inv.version)
            if seen is None:
                continue
            delays.append(seen - start)
            early += seen < inv.returned
    return delays, early


def row(case: Case) -> list[str]:
    prefix, exact = latencies(case, "prefix"), latencies(case, "exact")
    delays, early = deliveries(case)
    stale = sum(len(r.stale) for r in case.reports)
    full = sum(1 for inv in case.invalidations if inv.holding == case.readers)
    cells = [case.setting.label, str(case.readers)]
    cells += [f"{ms(prefix, 50)} / {ms(prefix, 99)} / {ms(prefix, 100)}"]
    cells += [f"{ms(exact, 50)} / {ms(exact, 99)} / {ms(exact, 100)}"]
    pushes = push_delays(case)
    cells += [f"{ms(pushes, 50)} / {ms(pushes, 99)}" if pushes else "—"]
    cells += [f"{ms(delays, 50)} / {ms(delays, 99)}" if delays else "—"]
    cells += [f"{early}/{len(delays)}" if delays else "—"]
    cells += [f"{full}/{len(case.invalidations)}" if case.readers else "—"]
    cells += [str(stale)]
    return cells


HEADERS = [
    "near cache",
    "readers",
    'invalidate("k:*") ms p50 / p99 / max',
    "item.invalidate(1) ms p50 / p99 / max",
    "push arrived, ms after ack p50 / p99",
    "new value returned, ms after ack (near off: after return) p50 / p99",
    "seen before the call returned",
    "all readers held an entry",
    "stale reads",
]


def table(cases: Sequence[Case]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    lines += ["| " + " | ".join(row(case)) + " |" for case in cases]
    return "\n".join(lines) + "\n"


def details(cases: Sequence[Case]) -> str:
    """The readers' own counters, and every stale read (there must be none)."""
    lines = [
        "| near cache | readers | reads | near hits | pushes received | push drops "
        "| reader errors | writer errors | reports missing |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    stale_lines: list[str] = []
    for case in cases:
        reports = case.reports
        cells = [
            case.setting.label,
            str(case.readers),
            f"{sum(r.reads for r in reports):,}",
            f"{sum(r.near_hits for r in reports):,}",
            f"{sum(len(r.pushes) for r in reports):,}",
            f"{sum(r.push_drops for r in reports):,}",
            str(sum(r.errors for r in reports)),
            str(case.writer_errors),
            str(case.missing_reports),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        for r in reports:
            for committed, value in r.stale:
                stale_lines.append(
                    f"- STALE: {case.setting.label}, {case.readers} readers: a read begun "
                    f"after version {committed} was committed returned {value}"
                )
    return "\n".join([*lines, "", *stale_lines]) + "\n"


#: How to read the table, written under it.
NOTES = """\
## Reading it

- "ack" is the moment the writer's Redis acknowledged the invalidation (the time the near
  cache's commit-wait starts from, read in the writer's `NearIO.dropped`). The writer returns
  `near_lease` after it, plus 1 ms (async). With the near cache off there is no such hook, so
  that column is measured from the call's return instead.
- "push arrived" is when each reader's subscriber thread received the writer's message;
  "new value returned" is when the reader's next read (a miss: a Redis read, the function's own
  read of its source, the store) returned it. Readers pause 0.5 ms between reads, so that is
  the resolution, plus scheduling on a busy machine.
- "push off": the writer's publish is replaced by a no-op (a benchmark-only hook), so only the
  commit-wait protects the readers; they find the invalidation by the hot key's background
  revalidation (every half lease) or at the lease's end.
- "stale reads": reads that began after an invalidation had returned and still returned an
  older value. They must be 0; each one is listed under the counters.
- Reader errors are backend timeouts (50 ms, freshcache's default) on a busy machine; those
  reads ran the function uncached, so they returned the source's current value.

"""


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unavailable"


def write_results(command: str, began: str, load_before: str, body: str) -> None:
    header = [
        "# The near cache's write-side cost vs the number of processes",
        "",
        f"`{command}`, started {began} (UTC), on {platform.node() or 'this machine'}, "
        f"Python {platform.python_version()}, {mp.cpu_count()} cores.",
        "",
        f"`cat /proc/loadavg` before: `{load_before}`; after: `{loadavg()}`.",
        "",
        "",
    ]
    RESULT_FILE.write_text("\n".join(header) + body)


async def main(quick: bool, write: bool) -> None:
    command = ".venv/bin/python benchmarks/near_writes.py" + (" --quick" if quick else "")
    began = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    load_before = loadavg()
    per_kind = 30 if quick else 200
    server = start_redis()
    cases: list[Case] = []
    try:
        # The settings of one N run back to back, so that the machine's load (shared, and
        # changing over minutes) weighs on the three alike rather than on the last one.
        for count in READERS:
            for setting in SETTINGS:
                if count == 0 and not setting.push and setting.lease:
                    continue  # no reader to push to: the same as the push on
                case = await run_case(server.url, setting, count, 2 * per_kind)
                print(" | ".join(row(case)), flush=True)
                cases.append(case)
    finally:
        server.stop()
    cases.sort(key=lambda case: (SETTINGS.index(case.setting), case.readers))
    body = "\n".join(
        [
            f"{per_kind} invalidations of each kind per row, alternating; readers pause "
            f"{PAUSE * 1000:.1f} ms between reads.",
            "",
            table(cases),
            f"Stale reads: {sum(len(r.stale) for c in cases for r in c.reports)} in "
            f"{sum(r.reads for c in cases for r in c.reports):,} reads.",
            "",
            details(cases),
            NOTES,
        ]
    )
    print("\n" + body)
    if write:
        write_results(command, began, load_before, body)
        print(f"written to {RESULT_FILE.relative_to(ROOT)}; command: {shlex.quote(command)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="30 invalidations of each kind")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT_FILE}")
    args = parser.parse_args()
    asyncio.run(main(args.quick, not args.no_write))
