"""Shared benchmark plumbing: the private servers, the payload, timing, summaries, tables.

Every server here is private to the run (a child process on a free loopback port, its data in
a temp dir), started through ``tests/support/servers.py``, the same code the test suite uses.
Nothing here ever connects to the system Redis (6379) or PostgreSQL (5432).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for `tests.support` (never prepended: no shadowing)

from tests.support.proxy import FaultProxy  # noqa: E402
from tests.support.servers import PostgresServer, RedisServer  # noqa: E402

__all__ = [
    "PAYLOAD",
    "RESULTS",
    "ROOT",
    "FaultProxy",
    "Mode",
    "PostgresServer",
    "RedisServer",
    "RowResult",
    "Summary",
    "Table",
    "Target",
    "command_calls",
    "command_delta",
    "environment",
    "fmt",
    "percentile",
    "start_redis",
    "summarise",
]

#: Settings every library gets where it has them: the same pool size, the same timeouts, no
#: retries, no periodic health checks, hiredis (redis-py picks it up when it is installed).
POOL_SIZE = 128
SOCKET_TIMEOUT = 0.05  # freshcache's default per-call timeout, given to every library


def _payload() -> dict[str, Any]:
    """A dashboard-stats-shaped value (~1.3 KB of JSON): the same for every library."""
    return {
        "total_bookings": 100_000,
        "by_status": {"pending": 31_512, "confirmed": 61_877, "cancelled": 6_611},
        "total_guests": 1_234_567,
        "confirmed_revenue": "5871234.50",
        "average_party_size": 12.3,
        "upcoming": [
            {"date": f"2026-01-{day:02d}", "bookings": 40 + day, "guests": 480 + 7 * day}
            for day in range(1, 21)
        ],
        "generated_at": "2025-11-25T01:30:00+00:00",
    }


PAYLOAD: dict[str, Any] = _payload()


@dataclasses.dataclass(frozen=True)
class Mode:
    """How much to measure: ``quick`` (under two minutes for everything) or ``full``."""

    name: str
    rounds: int  # measured rounds per case (interleaved)
    warmup: int  # rounds discarded first
    calls: int  # calls per round (hit/miss rows)
    keyspaces: tuple[int, ...]
    scan_reps: int
    gen_reps: int
    stampede_reps: int
    outage_seconds: float  # per outage phase
    heal_seconds: float  # how long stale reads are watched for after an outage
    consistency_ops: int  # per library
    service_seconds: float
    service_bookings: int

    @property
    def quick(self) -> bool:
        return self.name == "quick"


QUICK = Mode(
    "quick", 8, 2, 200, (10_000, 100_000, 1_000_000), 1, 50, 1, 0.6, 0.8, 4_000, 1.0, 20_000
)
FULL = Mode(
    "full", 40, 4, 500, (10_000, 100_000, 1_000_000), 5, 500, 3, 3.0, 8.0, 100_000, 8.0, 100_000
)


# -------------------------------------------------------------------------------- servers


def start_redis(**extra: str) -> RedisServer:
    """A private redis-server with DEBUG allowed from loopback (for DEBUG POPULATE)."""
    args = {"enable-debug-command": "local", "maxclients": "10000", **extra}
    server = RedisServer(args=args)
    server.start()
    return server


def command_calls(client: Any) -> dict[str, int]:
    """``INFO commandstats`` as {command: calls} (a sync redis-py client)."""
    info = client.info("commandstats")
    out: dict[str, int] = {}
    for name, fields in info.items():
        command = name.removeprefix("cmdstat_")
        out[command] = int(fields["calls"]) if isinstance(fields, dict) else 0
    return out


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    # INFO itself is counted; it is ours, not the library's.
    delta.pop("info", None)
    return {k: v for k, v in sorted(delta.items()) if v}


# -------------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclasses.dataclass(frozen=True)
class Summary:
    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


def summarise(values: Iterable[float]) -> Summary:
    data = list(values)
    if not data:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    return Summary(statistics.median(data), min(data), max(data), len(data))


def fmt(value: float | None, digits: int = 1) -> str:
    """Human numbers for tables: 12.3, 1,234, 1.2e-03, '—' for None/NaN."""
    if value is None or value != value:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return f"{value:.4f}"
    return f"{value:.{digits}f}"


def timed(func: Callable[[], Any]) -> float:
    began = time.perf_counter()
    func()
    return time.perf_counter() - began


# -------------------------------------------------------------------------------- results


@dataclasses.dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = dataclasses.field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("| " + " | ".join("---" for _ in self.headers) + " |")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    def as_row(self) -> list[str]:
        verdict = "—" if self.met is None else ("met" if self.met else "**missed**")
        return [self.name, self.goal, self.measured, verdict]


@dataclasses.dataclass
class RowResult:
    row: str
    tables: list[Table] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    targets: list[Target] = dataclasses.field(default_factory=list)
    plots: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def source_state() -> dict[str, Any]:
    """The commit measured, and whether src/ differs from it (results must name their code)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    status = git("status", "--porcelain", "--", "src")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(status),
        "src_status": status.splitlines()[:20],
    }


def environment(redis_version: str | None) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in (
        "freshcache",
        "redis",
        "hiredis",
        "orjson",
        "cashews",
        "aiocache",
        "dogpile.cache",
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "aiosqlite",
    ):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "redis_server": redis_version,
        "packages": versions,
    }


#: Where plots go: run.py points this at its --output directory.
OUTPUT = RESULTS


def plot_path(name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT / name


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
