"""Stampede: 200 concurrent callers on a cold key whose body takes 50 ms.

For each library, in its default and its best anti-stampede configuration (see libs.py), in
one process (200 callers) and across 4 processes (50 callers each, released together by a
barrier): how many times the body ran, the callers' wall time, errors, and Redis commands
per waiter (INFO commandstats delta around the whole burst, connection handshakes such as
CLIENT SETINFO/HELLO/SELECT left out). Async libraries use asyncio tasks; dogpile (sync)
uses threads.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from benchmarks.common import (
    PAYLOAD,
    RowResult,
    Table,
    Target,
    command_calls,
    command_delta,
    summarise,
)
from benchmarks.libs import build_async, build_sync

CALLERS = 200
PROCESSES = 4
BODY_SECONDS = 0.05
LIBS = ("freshcache", "cashews", "aiocache", "dogpile", "naive")
HANDSHAKE = {"client|setinfo", "client|setname", "hello", "select", "ping", "client"}


def _burst(
    lib: str, best: bool, url: str, arg: int, callers: int, ready: Any = None, go: Any = None
) -> dict[str, Any]:
    """Run ``callers`` concurrent calls of one cold key in this process; count bodies."""
    bodies = 0
    lock = threading.Lock()
    if lib == "dogpile":

        def sync_body(a: Any) -> Any:
            nonlocal bodies
            with lock:
                bodies += 1
            time.sleep(BODY_SECONDS)
            return PAYLOAD

        subject = build_sync(lib, url, sync_body, best=best, timeout=2.0, prefix="stampede")
        errors = 0
        start = threading.Barrier(callers + 1)

        def worker() -> None:
            nonlocal errors
            start.wait()
            try:
                if subject.call(arg) != PAYLOAD:
                    raise AssertionError("wrong value")
            except Exception:
                with lock:
                    errors += 1

        with ThreadPoolExecutor(callers) as pool:
            futures = [pool.submit(worker) for _ in range(callers)]
            if ready is not None:
                ready.wait()
                go.wait()
            began = time.perf_counter()
            start.wait()
            for f in futures:
                f.result()
            wall = time.perf_counter() - began
        subject.close()
        return {"bodies": bodies, "errors": errors, "wall": wall}

    async def main() -> dict[str, Any]:
        nonlocal bodies

        async def body(a: Any) -> Any:
            nonlocal bodies
            bodies += 1
            await asyncio.sleep(BODY_SECONDS)
            return PAYLOAD

        # Generous timeouts: this row is about coalescing, not about a slow server.
        subject = build_async(
            lib,
            url,
            body,
            best=best,
            timeout=2.0,
            prefix="stampede",
            cache_options={"pool_timeout": 5.0} if lib == "freshcache" else None,
        )
        errors = 0

        async def one() -> None:
            nonlocal errors
            try:
                if await subject.call(arg) != PAYLOAD:
                    raise AssertionError("wrong value")
            except Exception:
                errors += 1

        if ready is not None:
            await asyncio.get_running_loop().run_in_executor(None, ready.wait)
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(callers)))
        wall = time.perf_counter() - began
        await subject.close()
        return {"bodies": bodies, "errors": errors, "wall": wall}

    return asyncio.run(main())


def _worker(conn: Any, ready: Any, go: Any, url: str) -> None:
    while True:
        task = conn.recv()
        if task is None:
            return
        lib, best, arg, callers = task
        try:
            conn.send(_burst(lib, best, url, arg, callers, ready, go))
        except Exception as exc:  # report, never hang the parent
            conn.send({"bodies": 0, "errors": callers, "wall": 0.0, "failed": repr(exc)})


def run(ctx: Any) -> RowResult:
    url = ctx.redis.url
    admin: redis.Redis = ctx.admin
    admin.flushall()
    reps = ctx.mode.stampede_reps
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Barrier(PROCESSES + 1)
    go = spawn.Barrier(PROCESSES + 1)
    pipes, procs = [], []
    for _ in range(PROCESSES):
        parent, child = spawn.Pipe()
        proc = spawn.Process(target=_worker, args=(child, ready, go, url), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results: dict[str, Any] = {}
    arg = 0
    try:
        for r in range(reps):
            for lib in LIBS:
                for best in (False, True):
                    if lib == "naive" and best:
                        continue
                    config = f"{lib} {'best' if best else 'default'}"
                    for where in ("1 process", f"{PROCESSES} processes"):
                        arg += 1
                        before = command_calls(admin)
                        if where == "1 process":
                            out = _burst(lib, best, url, arg, CALLERS)
                        else:
                            for pipe in pipes:
                                pipe.send((lib, best, arg, CALLERS // PROCESSES))
                            ready.wait(60)
                            go.wait(60)
                            parts = [pipe.recv() for pipe in pipes]
                            out = {
                                "bodies": sum(p["bodies"] for p in parts),
                                "errors": sum(p["errors"] for p in parts),
                                "wall": max(p["wall"] for p in parts),
                                "failed": [p["failed"] for p in parts if "failed" in p],
                            }
                        delta = command_delta(before, command_calls(admin))
                        counted = {k: v for k, v in delta.items() if k not in HANDSHAKE}
                        out["commands"] = counted
                        out["commands_per_waiter"] = sum(counted.values()) / CALLERS
                        results.setdefault(config, {}).setdefault(where, []).append(out)
            print(f"   repetition {r + 1}/{reps} done", flush=True)
    finally:
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        admin.flushall()

    row = RowResult("stampede")
    rows = []
    data: dict[str, Any] = {}
    for config, by_where in results.items():
        for where, reps_out in by_where.items():
            bodies = summarise(o["bodies"] for o in reps_out)
            per_waiter = summarise(o["commands_per_waiter"] for o in reps_out)
            wall = summarise(o["wall"] for o in reps_out)
            errors = sum(o["errors"] for o in reps_out)
            top = max(reps_out, key=lambda o: sum(o["commands"].values()))["commands"]
            common = ", ".join(
                f"{k} {v}" for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:4]
            )
            rows.append(
                [
                    config,
                    where,
                    f"{bodies.median:.0f} ({bodies.min:.0f}–{bodies.max:.0f})",
                    f"{per_waiter.median:.1f}",
                    f"{wall.median * 1e3:.0f}",
                    str(errors),
                    common,
                ]
            )
            data.setdefault(config, {})[where] = reps_out
    row.tables.append(
        Table(
            f"Stampede: {CALLERS} concurrent callers on a cold key, "
            f"body {BODY_SECONDS * 1e3:.0f} ms",
            [
                "library / configuration",
                "where",
                "bodies run median (min–max)",
                "Redis commands per waiter",
                "wall ms",
                "errors",
                "commands (largest repetition)",
            ],
            rows,
            [
                f"{reps} repetition(s); best = freshcache lock=True, cashews lock=True, aiocache "
                "cached_stampede(lease=2), dogpile distributed_lock=True; naive has none",
                f"across processes: {PROCESSES} processes × {CALLERS // PROCESSES} callers, "
                "released together by a barrier",
            ],
        )
    )
    row.data = data

    def med(config: str, where: str, field: str) -> float:
        return summarise(o[field] for o in results[config][where]).median

    one = med("freshcache default", "1 process", "bodies")
    many = med("freshcache default", f"{PROCESSES} processes", "bodies")
    locked = med("freshcache best", f"{PROCESSES} processes", "bodies")
    cmds = med("freshcache best", f"{PROCESSES} processes", "commands_per_waiter")
    row.targets.append(
        Target(
            "stampede: body once per process by default",
            "1 per process",
            f"{one:.0f} in 1 process, {many:.0f} across {PROCESSES}",
            one == 1 and many <= PROCESSES,
        )
    )
    row.targets.append(
        Target(
            f"stampede: once in total across {PROCESSES} processes with lock=True",
            "1",
            f"{locked:.0f}",
            locked == 1,
        )
    )
    row.targets.append(
        Target(
            f"stampede: a few Redis commands per waiter (lock=True, {PROCESSES} processes)",
            "a few (≤ 5)",
            f"{cmds:.1f}",
            cmds <= 5,
        )
    )
    return row
