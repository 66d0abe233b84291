#!/usr/bin/env python3
"""The stale-read checker: does a cache serve data older than a write whose invalidation has
already returned?

    .venv/bin/python benchmarks/consistency.py                      # SQLite, every library
    .venv/bin/python benchmarks/consistency.py --db postgres --ops 100000
    .venv/bin/python benchmarks/consistency.py --libs freshcache,naive --processes 4
    .venv/bin/python benchmarks/consistency.py --libs freshcache-near,freshcache --fault sigstop

Several processes (``--processes``, each with ``--tasks`` asyncio tasks) run a mixed workload
against a real database (an SQLite file, or a private PostgreSQL) and a private Redis:

- a write bumps one row's version (``UPDATE rows SET version = version + 1 ... RETURNING``,
  committed), then the library's invalidation for that row runs, through the decorators under
  test; when it returns, the writer records ``(row, version, time)``;
- a read calls the cached function for one row and records ``(row, version seen, time it
  started)``.

Times come from CLOCK_MONOTONIC, which every process on the machine shares. After the run,
a read is *stale* if it started after the invalidation of some version ``v`` of its row had
returned, and returned a version older than ``v``. That is exactly the promise stated in
docs/consistency.md. The checker prints the counts side by side, with examples.

Faults (``--fault``), injected for real during each library's run (every round):

- ``eviction``: ``maxmemory`` a little above what the server holds, ``allkeys-random`` (LRU
  would keep the workload's hot keys and evict only fillers), and a thread writing filler keys
  for the whole run, so entries and tokens are evicted under the workload (the evicted-key
  count is printed);
- ``restart``: a BGSAVE shortly after the run starts, then, a moment later, Redis restarted
  from that older snapshot (its tokens and entries from before the writes in between);
- ``sigstop``: one worker process (never the parent) paused with SIGSTOP shortly after the run
  starts, for ``max(1 s, 10 × --near-lease)``, then resumed with SIGCONT, while the others go
  on reading, writing and invalidating. Every near entry the paused process holds has run out
  by the time it resumes; the checker prints when and how long it was paused, what the others
  did meanwhile, and the stale reads among the reads the paused process started after it
  resumed (those are already in the total; they are shown apart because they are the ones a
  near entry that outlived its lease would make stale).

Libraries: freshcache (``@cached`` + ``@invalidate_cache``, generations and leases),
freshcache-near (the same, with the near cache on in every process: ``near_lease`` =
``--near-lease``, 0.05 s by default, given to ``Cache.from_url``), the naive delete-after-write
design (GET/SET + DEL after commit), cashews (``@cache`` + ``@cache.invalidate``) and aiocache
(``@cached`` + ``cache.delete`` after commit). ``benchmarks/run.py`` runs the four without the
near cache (``RUN_LIBS``); the script alone runs all five unless ``--libs`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RowResult, Table, Target, fmt  # noqa: E402

LIBS = ("freshcache", "freshcache-near", "naive", "cashews", "aiocache")
#: The libraries of the ``consistency`` row of benchmarks/run.py (its figures stay comparable).
RUN_LIBS = ("freshcache", "naive", "cashews", "aiocache")
FAULTS = ("none", "eviction", "restart", "sigstop")
#: freshcache-near: the default near lease (seconds), the near cache's own default in myhibachi.
NEAR_LEASE = 0.05
#: sigstop: seconds after the start of a run to pause a worker; it stays paused for
#: max(SIGSTOP_MIN_S, SIGSTOP_LEASES × the near lease): far past any lease it holds.
SIGSTOP_AT, SIGSTOP_MIN_S, SIGSTOP_LEASES = 0.5, 1.0, 10
#: sigstop: which worker process is paused (its index; worker 0 is as good as any).
SIGSTOP_WORKER = 0
#: eviction: the head room above what Redis holds, and the size of each filler value.
EVICTION_HEADROOM, FILLER_BYTES = 4 * 1024 * 1024, 8 * 1024
#: restart: seconds after the start of a run to take the snapshot, then to restart from it.
SNAPSHOT_AT, RESTART_AT = 0.3, 0.8
TTL = 60
NAMESPACE = "consistency"


# ------------------------------------------------------------------------------ database


class Database:
    """The smallest async interface over aiosqlite or asyncpg that the workload needs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = "postgres" if url.startswith("postgres") else "sqlite"
        self._pool: Any = None
        self._conn: Any = None
        self._write_lock = asyncio.Lock()
        self.reads = 0  # database reads: the cached functions' bodies (misses)

    async def open(self, size: int) -> None:
        if self.kind == "postgres":
            import asyncpg

            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=size)
        else:
            import aiosqlite

            self._conn = await aiosqlite.connect(self.url, timeout=30, isolation_level=None)
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA busy_timeout=30000")
            await self._conn.execute("PRAGMA synchronous=NORMAL")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._conn is not None:
            await self._conn.close()

    async def reset(self, rows: int) -> None:
        if self.kind == "postgres":
            async with self._pool.acquire() as conn:
                await conn.execute("DROP TABLE IF EXISTS rows")
                await conn.execute(
                    "CREATE TABLE rows (id integer PRIMARY KEY, version integer NOT NULL)"
                )
                await conn.executemany(
                    "INSERT INTO rows VALUES ($1, 0)", [(i,) for i in range(rows)]
                )
        else:
            await self._conn.execute("DROP TABLE IF EXISTS rows")
            await self._conn.execute(
                "CREATE TABLE rows (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)"
            )
            await self._conn.executemany(
                "INSERT INTO rows VALUES (?, 0)", [(i,) for i in range(rows)]
            )

    async def read(self, row: int) -> int:
        self.reads += 1
        if self.kind == "postgres":
            async with self._pool.acquire() as conn:
                return int(await conn.fetchval("SELECT version FROM rows WHERE id = $1", row))
        # execute_fetchall finalises the statement at once: an open SELECT would keep a read
        # transaction on this shared connection and make the next write fail with BUSY.
        found = await self._conn.execute_fetchall("SELECT version FROM rows WHERE id = ?", (row,))
        return int(found[0][0])

    async def bump(self, row: int) -> int:
        """Increment and commit; returns the new version."""
        if self.kind == "postgres":
            async with self._pool.acquire() as conn:
                return int(
                    await conn.fetchval(
                        "UPDATE rows SET version = version + 1 WHERE id = $1 RETURNING version", row
                    )
                )
        # One connection per process: serialise this process's writes (autocommit mode).
        async with self._write_lock:
            found = await self._conn.execute_fetchall(
                "UPDATE rows SET version = version + 1 WHERE id = ? RETURNING version", (row,)
            )
        return int(found[0][0])


# ------------------------------------------------------------------------------ libraries


Reader = Callable[[int], Awaitable[dict[str, int]]]
Writer = Callable[[int], Awaitable[int]]


async def _build(
    lib: str, redis_url: str, db: Database, near_lease: float = NEAR_LEASE
) -> tuple[Reader, Writer, Any]:
    """The cached read and the invalidating write of one library, and its close()."""
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    from benchmarks.libs import POOL_SIZE, redis_kwargs

    if lib in ("freshcache", "freshcache-near"):
        import freshcache

        # freshcache-near differs in this one option: the decorators and the read and write
        # paths are the same, so the two rows compare the near cache alone.
        near: dict[str, Any] = {"near_lease": near_lease} if lib == "freshcache-near" else {}
        cache = freshcache.Cache.from_url(
            redis_url, namespace=NAMESPACE, timeout=0.5, max_connections=POOL_SIZE, **near
        )

        @cache.cached(ttl=TTL, key_prefix="rows:{row_id}")
        async def fc_read(row_id: int) -> dict[str, int]:
            return {"id": row_id, "version": await db.read(row_id)}

        @cache.invalidate_cache("rows:{row_id}:*")
        async def fc_write(row_id: int) -> int:
            return await db.bump(row_id)

        async def fc_close() -> dict[str, Any]:
            stats = {k: v.as_dict() for k, v in cache.stats().items()}
            await cache.aclose()
            return stats

        return fc_read, fc_write, fc_close

    if lib == "naive":
        import redis.asyncio

        from benchmarks.libs import naive_cached_async

        client = redis.asyncio.Redis(
            host=host, port=port, max_connections=POOL_SIZE, **redis_kwargs(0.5)
        )

        @naive_cached_async(client, TTL, f"{NAMESPACE}:rows")
        async def naive_read(row_id: int) -> dict[str, int]:
            return {"id": row_id, "version": await db.read(row_id)}

        async def naive_write(row_id: int) -> int:
            version = await db.bump(row_id)  # committed
            await client.delete(naive_read.key_for(row_id))  # type: ignore[attr-defined]
            return version

        return naive_read, naive_write, client.aclose

    if lib == "cashews":
        from cashews import Cache as CashewsCache

        cashews = CashewsCache()
        cashews.setup(f"redis://{host}:{port}/0", max_connections=POOL_SIZE, **redis_kwargs(0.5))
        key = f"{NAMESPACE}:rows:{{row_id}}"

        @cashews(ttl=TTL, key=key)
        async def cashews_read(row_id: int) -> dict[str, int]:
            return {"id": row_id, "version": await db.read(row_id)}

        @cashews.invalidate(key)
        async def cashews_write(row_id: int) -> int:
            return await db.bump(row_id)

        return cashews_read, cashews_write, cashews.close

    if lib == "aiocache":
        from aiocache import Cache as AioCache
        from aiocache import cached
        from aiocache.serializers import JsonSerializer

        @cached(
            ttl=TTL,
            cache=AioCache.REDIS,
            endpoint=host,
            port=port,
            serializer=JsonSerializer(),
            pool_max_size=POOL_SIZE,
            key_builder=lambda f, row_id: f"{NAMESPACE}:rows:{row_id}",
        )
        async def aio_read(row_id: int) -> dict[str, int]:
            return {"id": row_id, "version": await db.read(row_id)}

        async def aio_write(row_id: int) -> int:
            version = await db.bump(row_id)
            await aio_read.cache.delete(f"{NAMESPACE}:rows:{row_id}")
            return version

        return aio_read, aio_write, aio_read.cache.close

    raise ValueError(f"unknown library {lib!r}")


# ------------------------------------------------------------------------------ workers


def _worker(
    lib: str,
    redis_url: str,
    db_url: str,
    seed: int,
    ops: int,
    tasks: int,
    rows: int,
    write_ratio: float,
    deadline_s: float,
    near_lease: float,
    ready: Any,
    go: Any,
    conn: Any,
) -> None:
    async def main() -> dict[str, Any]:
        db = Database(db_url)
        await db.open(tasks)
        read, write, close = await _build(lib, redis_url, db, near_lease)
        rng = random.Random(seed)
        reads: list[tuple[int, int, int, int]] = []  # row, started_ns, ended_ns, version
        writes: list[tuple[int, int, int]] = []  # row, version, invalidated_ns
        errors: list[str] = []
        remaining = ops
        loop = asyncio.get_running_loop()
        # Warm-up outside the measured window, on a row the workload never touches: lazy
        # imports, connections, codecs and Lua scripts are paid here by every library alike.
        await read(rows)
        db.reads = 0
        await loop.run_in_executor(None, ready.wait)
        await loop.run_in_executor(None, go.wait)
        began = time.perf_counter()
        stop_at = began + deadline_s

        async def task() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < stop_at:
                remaining -= 1
                row = rng.randrange(rows)
                try:
                    if rng.random() < write_ratio:
                        version = await write(row)
                        writes.append((row, version, time.monotonic_ns()))
                    else:
                        started = time.monotonic_ns()
                        value = await read(row)
                        reads.append((row, started, time.monotonic_ns(), int(value["version"])))
                except Exception as exc:
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    errors.append("")

        await asyncio.gather(*(task() for _ in range(tasks)))
        elapsed = time.perf_counter() - began
        closed = await close()  # freshcache's returns its stats (diagnostics)
        await db.close()
        return {
            "reads": reads,
            "writes": writes,
            "elapsed": elapsed,
            "db_reads": db.reads,
            "errors": [e for e in errors if e],
            "cache_stats": closed if isinstance(closed, dict) else None,
            "error_count": errors.count(""),
        }

    try:
        conn.send(asyncio.run(main()))
    except Exception as exc:
        import traceback

        conn.send({"failed": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})


# ------------------------------------------------------------------------------ checker


def find_stale(
    reads: list[tuple[int, int, int, int]], writes: list[tuple[int, int, int]], examples: int = 5
) -> tuple[int, list[dict[str, Any]]]:
    """Reads that started after the invalidation of version v of their row had returned, and
    saw a version older than v."""
    by_row: dict[int, list[tuple[int, int]]] = {}
    for row, version, done_ns in writes:
        by_row.setdefault(row, []).append((done_ns, version))
    index: dict[int, tuple[list[int], list[int]]] = {}
    for row, items in by_row.items():
        items.sort()
        times, floor, best = [], [], 0
        for done_ns, version in items:
            best = max(best, version)
            times.append(done_ns)
            floor.append(best)  # the newest version whose invalidation had returned by then
        index[row] = (times, floor)
    stale = 0
    found: list[dict[str, Any]] = []
    for row, started, _ended, seen in reads:
        entry = index.get(row)
        if entry is None:
            continue
        times, floor = entry
        i = bisect.bisect_left(times, started) - 1  # invalidations that returned before start
        if i >= 0 and seen < floor[i]:
            stale += 1
            if len(found) < examples:
                found.append(
                    {
                        "row": row,
                        "saw": seen,
                        "expected_at_least": floor[i],
                        "started_ms_after_invalidation": (started - times[i]) / 1e6,
                    }
                )
    return stale, found


def check_library(
    lib: str,
    redis_url: str,
    db_url: str,
    *,
    ops: int,
    processes: int,
    tasks: int,
    rows: int,
    write_ratio: float,
    deadline_s: float,
    admin: Any = None,
    fault: Fault | None = None,
    near_lease: float = NEAR_LEASE,
) -> dict[str, Any]:
    """Run one library's workload in ``processes`` processes and check the reads."""
    spawn = multiprocessing.get_context("spawn")

    async def reset() -> None:
        db = Database(db_url)
        await db.open(1)
        await db.reset(rows + 1)  # the last row is only read, by each worker's warm-up
        await db.close()

    asyncio.run(reset())
    if admin is not None:
        try:
            admin.flushall()
        except Exception:  # the connection of before a restart: once more, on a new one
            admin.connection_pool.disconnect()
            admin.flushall()
    if fault is not None:
        fault.prepare()
    ready, go = spawn.Barrier(processes + 1), spawn.Barrier(processes + 1)
    pipes, procs = [], []
    for p in range(processes):
        parent, child = spawn.Pipe(duplex=False)
        proc = spawn.Process(
            target=_worker,
            daemon=True,
            args=(
                lib,
                redis_url,
                db_url,
                1000 + p,
                ops // processes,
                tasks,
                rows,
                write_ratio,
                deadline_s,
                near_lease,
                ready,
                go,
                child,
            ),
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        ready.wait(120)
        began = time.perf_counter()
        go.wait(120)
        if fault is not None:
            fault.start([proc.pid for proc in procs if proc.pid is not None])
        parts = [pipe.recv() for pipe in pipes]
        wall = time.perf_counter() - began
    finally:
        if fault is not None:
            fault.finish()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    failed = [p["failed"] for p in parts if "failed" in p]
    if failed:
        raise RuntimeError(f"{lib}: a worker failed: {failed[0]}")
    reads = [r for p in parts for r in p["reads"]]
    writes = [w for p in parts for w in p["writes"]]
    stale, examples = find_stale(reads, writes)
    done = len(reads) + len(writes)
    return {
        "lib": lib,
        "reads": len(reads),
        "writes": len(writes),
        "ops": done,
        "errors": sum(p["error_count"] for p in parts),
        "error_examples": [e for p in parts for e in p["errors"]][:3],
        "stale": stale,
        "stale_pct": 100 * stale / len(reads) if reads else 0.0,
        "examples": examples,
        "wall_s": wall,
        "ops_per_s": done / wall if wall else 0.0,
        "db_reads": sum(p["db_reads"] for p in parts),
        "miss_ratio": sum(p["db_reads"] for p in parts) / len(reads) if reads else 0.0,
        "process_seconds": [round(p["elapsed"], 2) for p in parts],
        "cache_stats": _merge_stats([p["cache_stats"] for p in parts if p.get("cache_stats")]),
        "read_p50_ms": _pct([(r[2] - r[1]) / 1e6 for r in reads], 50),
        "fault": fault.report(parts, writes) if fault is not None else "",
        "paused_stale": fault.paused_stale if fault is not None else 0,
    }


class Fault:
    """A fault injected while one library's workload runs: into the private Redis
    (``eviction``, ``restart``) or into one worker process (``sigstop``)."""

    def __init__(
        self, kind: str, server: Any, scratch: Path, near_lease: float = NEAR_LEASE
    ) -> None:
        self.kind = kind
        self.server = server
        self.scratch = scratch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: list[str] = []
        self._evicted_before = 0
        #: sigstop: how long the worker stays paused, its pid, and CLOCK_MONOTONIC (ns) of
        #: the moment it was seen stopped and of the SIGCONT (0: not reached).
        self.pause_s = max(SIGSTOP_MIN_S, SIGSTOP_LEASES * near_lease)
        self.near_lease = near_lease
        self._pids: list[int] = []
        self._stopped_ns = self._resumed_ns = 0
        self._began_ns = 0
        #: sigstop: stale reads among those the paused worker started after SIGCONT.
        self.paused_stale = 0

    def _admin(self) -> Any:
        import redis

        return redis.Redis(host=self.server.host, port=self.server.port)

    def prepare(self) -> None:
        self._stop.clear()
        self._done = []
        self._stopped_ns = self._resumed_ns = 0
        self.paused_stale = 0
        if self.kind == "eviction":
            with self._admin() as admin:
                used = int(admin.info("memory")["used_memory"])
                admin.config_set("maxmemory-policy", "allkeys-random")
                admin.config_set("maxmemory", used + EVICTION_HEADROOM)
                self._evicted_before = int(admin.info("stats")["evicted_keys"])

    def start(self, pids: list[int]) -> None:
        """Begin, as the workers are released (``pids``: the worker processes, in order)."""
        self._pids = pids
        self._began_ns = time.monotonic_ns()
        targets = {"eviction": self._fill, "restart": self._restart, "sigstop": self._sigstop}
        self._thread = threading.Thread(target=targets[self.kind], daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        import redis

        value = b"f" * FILLER_BYTES
        n = 0
        with self._admin() as admin:
            while not self._stop.wait(0.001):
                with contextlib.suppress(redis.RedisError):  # an OOM now and then: go on
                    admin.set(f"filler:{n}", value)
                n += 1

    def _restart(self) -> None:
        if self._stop.wait(SNAPSHOT_AT):
            return
        dump = self.server.save_snapshot(self.scratch / "older.rdb")
        self._done.append("snapshot")
        if self._stop.wait(RESTART_AT - SNAPSHOT_AT):
            return
        self.server.restart_from_snapshot(dump)
        self._done.append("restarted from it")

    def _sigstop(self) -> None:
        import signal

        if self._stop.wait(SIGSTOP_AT) or len(self._pids) <= SIGSTOP_WORKER:
            return
        pid = self._pids[SIGSTOP_WORKER]
        os.kill(pid, signal.SIGSTOP)
        try:
            # SIGSTOP is delivered asynchronously: the pause counts from when the kernel
            # reports the process stopped, so that it is never shorter than announced.
            stopped = _wait_stopped(pid, timeout=1.0)
            self._stopped_ns = time.monotonic_ns()
            if not stopped:
                self._done.append(f"worker {SIGSTOP_WORKER} (pid {pid}) not seen stopped")
            self._stop.wait(self.pause_s)  # finish() cuts it short only if the run failed
        finally:
            # Stamped before the signal: this thread may lose the CPU right after sending it,
            # and a read the worker starts meanwhile must count as after the pause.
            self._resumed_ns = time.monotonic_ns()
            os.kill(pid, signal.SIGCONT)

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        if self.kind == "eviction":
            with self._admin() as admin:
                evicted = int(admin.info("stats")["evicted_keys"]) - self._evicted_before
                admin.config_set("maxmemory", 0)
            self._done.append(f"{evicted} keys evicted")

    def report(self, parts: list[dict[str, Any]], writes: list[tuple[int, int, int]]) -> str:
        """What was done, in words (for sigstop: checked against the workers' records)."""
        if self.kind == "sigstop" and self._resumed_ns:
            self._done.append(self._paused_summary(parts, writes))
        return ", ".join(self._done) or "not reached (the run ended first)"

    def _paused_summary(
        self, parts: list[dict[str, Any]], writes: list[tuple[int, int, int]]
    ) -> str:
        """When and how long the worker was paused, what the others did meanwhile, and how
        its reads after SIGCONT fared (the ones a near entry past its lease would spoil)."""
        stopped, resumed = self._stopped_ns, self._resumed_ns
        paused = parts[SIGSTOP_WORKER]
        others = [p for i, p in enumerate(parts) if i != SIGSTOP_WORKER]
        own_during = [r for r in paused["reads"] if stopped < r[1] < resumed]
        other_writes = [w for p in others for w in p["writes"] if stopped <= w[2] <= resumed]
        other_reads = [r for p in others for r in p["reads"] if stopped <= r[1] <= resumed]
        touched = {w[0] for w in other_writes}
        after = [r for r in paused["reads"] if r[1] >= resumed]
        on_touched = [r for r in after if r[0] in touched]
        # Reads in the first lease after SIGCONT: the ones an entry kept before the pause
        # would have answered had its deadline been counted in the worker's running time.
        first_lease = [r for r in after if r[1] < resumed + self.near_lease * 1e9]
        self.paused_stale, _ = find_stale(after, writes)
        late_writes = sum(1 for w in paused["writes"] if w[2] >= resumed)
        return (
            f"worker {SIGSTOP_WORKER} (pid {self._pids[SIGSTOP_WORKER]}) SIGSTOPped "
            f"{(stopped - self._began_ns) / 1e9:.2f} s into the run for "
            f"{(resumed - stopped) / 1e9:.2f} s ({(resumed - stopped) / 1e9 / self.near_lease:.0f}"
            f"× the {self.near_lease:g} s near lease), then SIGCONT; while it was stopped the "
            f"other workers completed {len(other_writes):,} writes+invalidations (on "
            f"{len(touched)} rows) and {len(other_reads):,} reads; reads it started while "
            f"stopped: {len(own_during)} (must be 0); after SIGCONT it started {len(after):,} "
            f"reads ({len(on_touched):,} on rows invalidated during its pause, "
            f"{len(first_lease):,} within one lease of SIGCONT) and completed "
            f"{late_writes:,} writes; stale among its reads after SIGCONT: {self.paused_stale}"
        )


def _wait_stopped(pid: int, timeout: float) -> bool:
    """Whether ``pid`` reaches the stopped state ('T' in /proc/<pid>/stat) within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False  # gone (the run ended): nothing to wait for
        # The state follows the parenthesised command name, which may itself hold spaces.
        if stat.rpartition(")")[2].split()[0] in ("T", "t"):
            return True
        time.sleep(0.001)
    return False


def check_interleaved(
    libs: list[str], redis_url: str, db_url: str, *, ops: int, rounds: int, **settings: Any
) -> list[dict[str, Any]]:
    """Every library, ``rounds`` times, interleaved (A B C D A B C D ...): ``ops`` per library
    in all. Counts add up over the rounds; throughput is the median over the rounds, so that
    a burst of background load cannot land on one library alone."""
    per_round: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    for r in range(rounds):
        order = libs[r % len(libs) :] + libs[: r % len(libs)]
        for lib in order:
            print(f"   round {r + 1}/{rounds}: {lib}", flush=True)
            per_round[lib].append(
                check_library(lib, redis_url, db_url, ops=ops // rounds, **settings)
            )
    merged = []
    for lib, parts in per_round.items():
        reads = sum(p["reads"] for p in parts)
        stats = [p["cache_stats"] for p in parts if p["cache_stats"]]
        merged.append(
            {
                "lib": lib,
                "reads": reads,
                "writes": sum(p["writes"] for p in parts),
                "ops": sum(p["ops"] for p in parts),
                "errors": sum(p["errors"] for p in parts),
                "error_examples": [e for p in parts for e in p["error_examples"]][:3],
                "stale": sum(p["stale"] for p in parts),
                "stale_pct": 100 * sum(p["stale"] for p in parts) / reads if reads else 0.0,
                "examples": [e for p in parts for e in p["examples"]][:5],
                "ops_per_s": statistics.median(p["ops_per_s"] for p in parts),
                "ops_per_s_rounds": [round(p["ops_per_s"]) for p in parts],
                "db_reads": sum(p["db_reads"] for p in parts),
                "miss_ratio": sum(p["db_reads"] for p in parts) / reads if reads else 0.0,
                "process_seconds": [p["process_seconds"] for p in parts],
                "cache_stats": _sum_counters(stats) if stats else None,
                "read_p50_ms": statistics.median(p["read_p50_ms"] for p in parts),
                "fault": "; ".join(p["fault"] for p in parts if p["fault"]),
                "paused_stale": sum(p["paused_stale"] for p in parts),
            }
        )
    return merged


def _sum_counters(records: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for record in records:
        for k, v in record.items():
            if isinstance(v, dict):
                bucket = total.setdefault(k, {})
                for kk, vv in v.items():
                    bucket[kk] = bucket.get(kk, 0) + vv
            else:
                total[k] = total.get(k, 0) + v
    return total


def _merge_stats(snapshots: list[dict[str, Any]]) -> dict[str, Any] | None:
    """freshcache's counters summed over the processes (hits, misses, stale, bypasses...)."""
    if not snapshots:
        return None
    keys = ("hits", "misses", "stale", "sets", "errors", "bypasses", "lock_waits")
    # Present only with the near cache on (near_hits are also counted in hits).
    near_keys = ("near_hits", "near_revalidations", "near_push_drops", "near_wait_count")
    total: dict[str, Any] = dict.fromkeys(keys, 0)
    reasons: dict[str, int] = {}
    for snapshot in snapshots:
        for record in snapshot.values():
            for k in keys:
                total[k] += record[k]
            for k in near_keys:
                if record.get("near_wait_count") or record.get("near_hits"):
                    total[k] = total.get(k, 0) + record.get(k, 0)
            if record.get("near_wait_count"):
                total["near_wait_sum_s"] = round(
                    total.get("near_wait_sum_s", 0.0) + record["near_wait_sum"], 3
                )
            for reason, n in record["bypasses_by_reason"].items():
                reasons[reason] = reasons.get(reason, 0) + n
    total["bypasses_by_reason"] = reasons
    return total


def _pct(values: list[float], q: float) -> float:
    from benchmarks.common import percentile

    return percentile(values, q)


def table(results: list[dict[str, Any]], setting: str) -> Table:
    naive = next((r for r in results if r["lib"] == "naive"), None)
    rows = []
    for r in results:
        rel = f"{r['ops_per_s'] / naive['ops_per_s']:.2f}×" if naive else "—"
        ex = r["examples"][0] if r["examples"] else None
        example = (
            (
                f"row {ex['row']}: saw v{ex['saw']}, v{ex['expected_at_least']} invalidated "
                f"{ex['started_ms_after_invalidation']:.1f} ms before the read"
            )
            if ex
            else "—"
        )
        rows.append(
            [
                r["lib"],
                f"{r['ops']:,}",
                f"{r['reads']:,}",
                f"{r['writes']:,}",
                f"**{r['stale']:,}**",
                f"{r['stale_pct']:.2f}%",
                f"{r['miss_ratio']:.1%}",
                fmt(r["ops_per_s"], 0),
                rel,
                str(r["errors"]),
                example,
            ]
        )
    notes = [
        "ops/s: median over the interleaved rounds; per round: "
        + "; ".join(
            f"{r['lib']} {r.get('ops_per_s_rounds', [round(r['ops_per_s'])])}" for r in results
        ),
    ]
    for r in results:
        if r.get("cache_stats"):
            notes.append(f"{r['lib']} counters (all processes): {r['cache_stats']}")
    return Table(
        f"Stale reads ({setting})",
        [
            "library",
            "ops",
            "reads",
            "writes",
            "stale reads",
            "stale %",
            "reads that went to the DB",
            "ops/s",
            "× naive ops/s",
            "errors",
            "example",
        ],
        rows,
        notes,
    )


# ------------------------------------------------------------------------------ entry points


def _settings(quick: bool, ops: int) -> dict[str, Any]:
    return {
        "rounds": 2 if quick else 4,
        "ops": ops,
        "processes": 4,
        "tasks": 8,
        "rows": 20,
        "write_ratio": 0.1,
        "deadline_s": 20.0 if quick else 60.0,
    }


def run(ctx: Any) -> RowResult:
    """The ``consistency`` row of benchmarks/run.py: SQLite (quick) or PostgreSQL (full)."""
    from benchmarks.common import PostgresServer

    mode = ctx.mode
    settings = _settings(mode.quick, mode.consistency_ops)
    row = RowResult("consistency")
    databases: list[tuple[str, Any]] = []
    pg: PostgresServer | None = None
    tmp = tempfile.TemporaryDirectory(prefix="freshcache-consistency-")
    databases.append(("SQLite file", f"{tmp.name}/rows.sqlite3"))
    if not mode.quick:
        try:
            pg = PostgresServer()
            pg.start()
            databases.append(("PostgreSQL", pg.dsn))
        except Exception as exc:
            row.tables.append(Table("PostgreSQL skipped", ["reason"], [[str(exc)[:200]]]))
            pg = None
    try:
        for label, db_url in databases:
            print(f"   {label}", flush=True)
            results = check_interleaved(
                list(RUN_LIBS), ctx.redis.url, db_url, admin=ctx.admin, **settings
            )
            setting = (
                f"{label}, {settings['processes']} processes × {settings['tasks']} tasks, "
                f"{settings['rows']} rows, {settings['write_ratio']:.0%} writes, "
                f"TTL {TTL} s"
            )
            t = table(results, setting)
            t.notes.append(
                "stale: the read started after the invalidation of a newer version "
                "had returned (CLOCK_MONOTONIC, shared by all processes)"
            )
            row.tables.append(t)
            row.data[label] = {"settings": settings, "results": results}
            fc = next(r for r in results if r["lib"] == "freshcache")
            naive = next(r for r in results if r["lib"] == "naive")
            row.targets.append(
                Target(
                    f"stale reads: 0 for freshcache ({label})",
                    "0 over ≥ 100,000 ops",
                    f"{fc['stale']} over {fc['ops']:,} ops",
                    fc["stale"] == 0 and (fc["ops"] >= 100_000 or None),
                )
            )
            ratio = fc["ops_per_s"] / naive["ops_per_s"]
            row.targets.append(
                Target(
                    f"checker throughput ≥ 0.9× naive ({label})",
                    "≥ 0.9×",
                    f"{ratio:.2f}× ({fmt(fc['ops_per_s'], 0)} vs "
                    f"{fmt(naive['ops_per_s'], 0)} ops/s)",
                    (ratio >= 0.9) if fc["ops"] >= 100_000 else None,
                )
            )
    finally:
        if pg is not None:
            pg.stop()
        tmp.cleanup()
    for t in row.targets:  # a run too short to judge the count says so instead of "met"
        if t.met is None:
            t.measured += " (run too short to judge)"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The stale-read checker (docs/benchmarks.md).")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--libs", default=",".join(LIBS), help=f"any of {','.join(LIBS)}")
    parser.add_argument("--ops", type=int, default=20_000, help="ops per library (all processes)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8, help="asyncio tasks per process")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--write-ratio", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per library")
    parser.add_argument("--fault", choices=FAULTS, default="none", help="injected during runs")
    parser.add_argument(
        "--near-lease",
        type=float,
        default=NEAR_LEASE,
        help="freshcache-near's near_lease in seconds (sigstop pauses max(1 s, 10× it))",
    )
    args = parser.parse_args(argv)
    libs = args.libs.split(",")
    unknown = [lib for lib in libs if lib not in LIBS]
    if unknown:
        parser.error(f"unknown --libs {','.join(unknown)} (known: {','.join(LIBS)})")
    if not args.near_lease > 0:
        parser.error("--near-lease must be positive seconds")
    import redis

    from benchmarks.common import PostgresServer, start_redis

    server = start_redis()
    admin = redis.Redis(host=server.host, port=server.port)
    pg = None
    tmp = tempfile.TemporaryDirectory(prefix="freshcache-consistency-")
    try:
        if args.db == "postgres":
            pg = PostgresServer()
            pg.start()
            db_url = pg.dsn
        else:
            db_url = os.path.join(tmp.name, "rows.sqlite3")
        fault = None
        if args.fault != "none":
            fault = Fault(args.fault, server, Path(tmp.name), near_lease=args.near_lease)
        results = check_interleaved(
            libs,
            server.url,
            db_url,
            ops=args.ops,
            rounds=args.rounds,
            processes=args.processes,
            tasks=args.tasks,
            rows=args.rows,
            write_ratio=args.write_ratio,
            deadline_s=args.seconds,
            admin=admin,
            fault=fault,
            near_lease=args.near_lease,
        )
        t = table(
            results,
            f"{args.db}, {args.processes} processes × {args.tasks} tasks, "
            f"{args.rows} rows, {args.write_ratio:.0%} writes"
            + (f", near lease {args.near_lease:g} s" if "freshcache-near" in libs else "")
            + ("" if args.fault == "none" else f", fault: {args.fault}"),
        )
        print(t.markdown())
        for r in results:
            if r.get("fault"):
                print(f"  {r['lib']} fault: {r['fault']}")
        for r in results:
            for ex in r["examples"]:
                print(f"  {r['lib']}: {ex}")
            for err in r["error_examples"]:
                print(f"  {r['lib']} error: {err}")
    finally:
        admin.close()
        server.stop()
        if pg is not None:
            pg.stop()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
