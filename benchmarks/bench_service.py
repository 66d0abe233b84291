"""myhibachi end to end: uvicorn (one worker) on loopback, a bounded async load generator.

For each database (SQLite file; PostgreSQL too in --full), seeded once with
``myhibachi seed --bookings N``, and each cache setting (uncached, freshcache on memory://,
freshcache on the private Redis), with 0% and 2% writes (POST /api/bookings on a random
future day): requests/s, p50 and p99 of GET /api/stats and GET /api/availability?date=...

The load generator is httpx.AsyncClient with ``CONCURRENCY`` keep-alive connections, for a
fixed time per case after a warm-up (which also warms the cache). It runs on the same 2-CPU
machine as the server, so the cached figures are a lower bound: the generator saturates too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import ROOT, Mode, PostgresServer, RowResult, Table, Target, fmt, percentile

CONCURRENCY = 16
ENDPOINTS = ("stats", "availability")
CACHES = ("uncached", "memory", "redis")
WRITE_RATIOS = (0.0, 0.02)
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(env: dict[str, str], bookings: int) -> float:
    began = time.perf_counter()
    exe = Path(PY).with_name("myhibachi")
    subprocess.run(
        [str(exe), "seed", "--bookings", str(bookings)],
        env=env,
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )
    return time.perf_counter() - began


@contextlib.contextmanager
def _server(env: dict[str, str], uncached: bool) -> Any:
    port = _free_port()
    argv = [PY, str(ROOT / "benchmarks" / "_serve.py"), str(port)]
    if uncached:
        argv.append("--uncached")
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"myhibachi exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("myhibachi did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of the server process so far (includes the warm-up)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _booking(rng: random.Random) -> dict[str, Any]:
    day = dt.date.today() + dt.timedelta(days=rng.randint(2, 300))
    return {
        "customer_name": "Load Test",
        "email": f"load{rng.randrange(10**9)}@example.com",
        "phone": "+1 415 555 0100",
        "event_date": day.isoformat(),
        "time_slot": rng.choice(["12:00", "15:00", "18:00", "21:00"]),
        "guests": rng.randint(1, 30),
        "address": "1 Loopback Way",
    }


class _Http:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (one connection).

    httpx costs about 1 ms of CPU per request, which on this 2-CPU machine made the load
    generator, not the service, the limit of every cached case. This one parses only what
    the service sends (status line, headers, Content-Length or chunked body)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        elif length:
            await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _load(
    base: str, endpoint: str, write_ratio: float, seconds: float, warmup: float
) -> dict[str, Any]:
    rng = random.Random(7)
    today = dt.date.today()
    days = [(today + dt.timedelta(days=d)).isoformat() for d in range(1, 61)]
    latencies: list[float] = []
    counts = {"ok": 0, "writes": 0, "conflicts": 0, "errors": 0}
    host, port = base.removeprefix("http://").split(":")

    async def worker(until: float, measure: bool) -> None:
        client = _Http(host, int(port))
        try:
            while time.perf_counter() < until:
                try:
                    if write_ratio and rng.random() < write_ratio:
                        status = await client.request(
                            "POST", "/api/bookings", orjson.dumps(_booking(rng))
                        )
                        if measure:
                            counts["writes"] += 1
                            if status == 409:
                                counts["conflicts"] += 1
                            elif status >= 400:
                                counts["errors"] += 1
                        continue
                    url = (
                        "/api/stats"
                        if endpoint == "stats"
                        else f"/api/availability?date={rng.choice(days)}"
                    )
                    began = time.perf_counter()
                    status = await client.request("GET", url)
                    if measure:
                        latencies.append(time.perf_counter() - began)
                        counts["ok" if status == 200 else "errors"] += 1
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    counts["errors"] += 1
                    await client.close()
        finally:
            await client.close()

    await asyncio.gather(*(worker(time.perf_counter() + warmup, False) for _ in range(CONCURRENCY)))
    began = time.perf_counter()
    await asyncio.gather(*(worker(began + seconds, True) for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "requests": len(latencies),
        **counts,
    }


def _cache_counters(base: str) -> dict[str, float]:
    """freshcache's counters from the service's /metrics, summed over labels."""
    import httpx

    try:
        text = httpx.get(f"{base}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("freshcache_") or line.startswith("freshcache_latency"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0].removesuffix("_total")
        name = name.removeprefix("freshcache_")
        if name in ("hits", "misses", "stale", "sets", "errors", "bypasses"):
            try:
                totals[name] = totals.get(name, 0.0) + float(value)
            except ValueError:
                continue
    return totals


def _counters_cell(cache: str, c: dict[str, int]) -> str:
    if cache == "uncached" or not c:
        return "—"
    return (
        f"{c.get('hits', 0)} / {c.get('misses', 0) + c.get('stale', 0)} / "
        f"{c.get('errors', 0)} / {c.get('bypasses', 0)}"
    )


def run(ctx: Any) -> RowResult:
    mode: Mode = ctx.mode
    row = RowResult("service")
    tmp = tempfile.TemporaryDirectory(prefix="freshcache-service-")
    databases = [("SQLite", f"sqlite+aiosqlite:///{tmp.name}/myhibachi.sqlite3")]
    pg: PostgresServer | None = None
    if not mode.quick:
        try:
            pg = PostgresServer()
            pg.start()
            databases.append(("PostgreSQL", pg.url()))
        except Exception as exc:
            row.tables.append(Table("PostgreSQL skipped", ["reason"], [[str(exc)[:200]]]))
            pg = None
    results: dict[str, Any] = {}
    try:
        for label, db_url in databases:
            base_env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("FRESHCACHE_", "MYHIBACHI_", "DATABASE_URL"))
            }
            base_env["DATABASE_URL"] = db_url
            print(f"   {label}: seeding {mode.service_bookings:,} bookings", flush=True)
            seeded = _seed(base_env, mode.service_bookings)
            results.setdefault(label, {})["seed_seconds"] = seeded
            for cache in CACHES:
                env = dict(base_env)
                env["FRESHCACHE_URL"] = ctx.redis.url if cache == "redis" else "memory://"
                env["FRESHCACHE_NAMESPACE"] = f"svc{len(results[label])}"
                ctx.admin.flushall()
                with _server(env, uncached=cache == "uncached") as (base, pid):
                    for ratio in WRITE_RATIOS:
                        for endpoint in ENDPOINTS:
                            cpu = _cpu_seconds(pid)
                            before = _cache_counters(base)
                            out = asyncio.run(
                                _load(
                                    base,
                                    endpoint,
                                    ratio,
                                    mode.service_seconds,
                                    0.5 if mode.quick else 2.0,
                                )
                            )
                            total = out["requests"] + out["writes"]
                            out["server_cpu_ms"] = (_cpu_seconds(pid) - cpu) * 1e3 / max(total, 1)
                            after = _cache_counters(base)
                            out["cache"] = {
                                k: int(after.get(k, 0) - before.get(k, 0)) for k in after
                            }
                            results[label].setdefault(cache, {})[f"{endpoint}@{ratio:.0%}"] = out
                            print(
                                f"   {label} {cache} {endpoint} {ratio:.0%}: "
                                f"{out['rps']:.0f} req/s",
                                flush=True,
                            )
    finally:
        if pg is not None:
            pg.stop()
        tmp.cleanup()
    for label, by_cache in results.items():
        rows = []
        for cache in CACHES:
            for key, out in by_cache[cache].items():
                endpoint, ratio = key.split("@")
                base_rps = by_cache["uncached"][key]["rps"]
                rows.append(
                    [
                        cache,
                        endpoint,
                        ratio,
                        fmt(out["rps"], 0),
                        fmt(out["p50_ms"], 2),
                        fmt(out["p99_ms"], 2),
                        f"{out['rps'] / base_rps:.1f}×",
                        fmt(out["server_cpu_ms"], 2),
                        f"{out['writes']} ({out['conflicts']} full)",
                        str(out["errors"]),
                        _counters_cell(cache, out.get("cache", {})),
                    ]
                )
        row.tables.append(
            Table(
                f"myhibachi end to end, {label}, {mode.service_bookings:,} bookings",
                [
                    "cache",
                    "endpoint",
                    "writes",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "× uncached",
                    "server CPU ms/req",
                    "POST /api/bookings (409)",
                    "errors",
                    "freshcache hits / misses / errors / bypasses",
                ],
                rows,
                [
                    f"seeded in {by_cache['seed_seconds']:.0f} s; {CONCURRENCY} keep-alive "
                    f"connections, {mode.service_seconds:.0f} s per case after a warm-up; "
                    "uvicorn, one worker; load generator on the same 2-CPU machine",
                    "uncached: the same service with every @cached call run directly",
                    "load generator: a minimal HTTP/1.1 keep-alive client on asyncio streams "
                    "(httpx spent ~1 ms of CPU per request and was the limit)",
                    "freshcache counters: from the service's /metrics over the measured window "
                    "(misses include stale rejections; bypasses: reads that ran uncached)",
                    "server CPU ms/req: the uvicorn process's CPU (user + system, warm-up "
                    "included) per request; when it is far below 1000 / req/s, the load "
                    "generator is the limit",
                ],
            )
        )
    row.data = results
    for label, by_cache in results.items():
        for cache in ("memory", "redis"):
            ratio = by_cache[cache]["stats@0%"]["rps"] / by_cache["uncached"]["stats@0%"]["rps"]
            enough = mode.service_bookings >= 100_000
            row.targets.append(
                Target(
                    f"GET /api/stats ≥ 20× uncached, warm cache ({label}, {cache})",
                    "≥ 20×",
                    f"{ratio:.1f}× ({mode.service_bookings:,} bookings)",
                    (ratio >= 20) if enough else None,
                )
            )
    return row
