#!/usr/bin/env python3
"""Run the benchmarks: every library against one private Redis, in one run, interleaved.

    python3 dev.py bench                       # = benchmarks/run.py --quick (under two minutes)
    .venv/bin/python benchmarks/run.py --full  # the real numbers (several minutes)
    .venv/bin/python benchmarks/run.py --quick --only hit --only invalidate

Writes benchmarks/results/latest.json, latest.md and the PNG plots, and prints the tables.
Rows: hit (hit and miss paths), invalidate, stampede, memory, outage, consistency, service.
See docs/benchmarks.md for what each row measures and how to read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `benchmarks` and `tests.support` as packages

from benchmarks.common import (  # noqa: E402
    FULL,
    QUICK,
    RESULTS,
    Mode,
    RedisServer,
    RowResult,
    Table,
    Target,
    environment,
    source_state,
    start_redis,
)

ROWS = {
    "hit": "benchmarks.bench_hit",
    "invalidate": "benchmarks.bench_invalidate",
    "stampede": "benchmarks.bench_stampede",
    "memory": "benchmarks.bench_memory",
    "outage": "benchmarks.bench_outage",
    "consistency": "benchmarks.consistency",
    "service": "benchmarks.bench_service",
}


@dataclasses.dataclass
class Context:
    mode: Mode
    redis: RedisServer
    admin: Any  # a sync redis-py client on the private server, for FLUSHALL, INFO, MEMORY


def _markdown(results: list[RowResult], meta: dict[str, Any]) -> str:
    env = meta["environment"]
    src = meta["source"]
    code = f"commit {src['commit']}" + (
        " with uncommitted changes in src/" if src["src_modified"] else ""
    )
    if src.get("pinned"):
        code += " (src/ pinned: exported from the commit, untouched by edits during the run)"
    if meta["source_changed_during_run"]:
        code += " (**src/ changed during the run: rows may have measured different code**)"
    lines = [
        "# Benchmark results",
        "",
        f"Mode **{meta['mode']}**, {meta['started']}, wall time {meta['wall_seconds']:.0f} s. "
        f"Python {env['python']}, redis-server {env['redis_server']}, {env['cpus']} CPUs, "
        f"{env['platform']}. Code: {code}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v) + ".",
        "",
        "Ratios are within this one run; absolute times depend on the machine. "
        "Regenerate with `python3 dev.py bench` (quick) or "
        "`.venv/bin/python benchmarks/run.py --full`; see docs/benchmarks.md.",
        "",
    ]
    targets = [t for r in results for t in r.targets]
    if targets:
        table = Table(
            "Targets", ["target", "goal", "measured", "verdict"], [t.as_row() for t in targets]
        )
        lines.append(table.markdown())
    for r in results:
        lines.append(f"## {r.row} ({r.seconds:.0f} s)\n")
        if r.error:
            lines.append(f"**Row failed:** `{r.error.strip().splitlines()[-1]}`\n")
        lines += [t.markdown() for t in r.tables]
        lines += [f"![{p}]({p})\n" for p in r.plots]
    return "\n".join(lines)


def _pin_sources() -> Path:
    """Export HEAD's src/ to a temporary directory and put it first on the import path of
    this process and (through PYTHONPATH) of every process it starts."""
    import io
    import os
    import subprocess
    import tarfile
    import tempfile

    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD", "src"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    target = Path(tempfile.mkdtemp(prefix="freshcache-bench-src-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    src = str(target / "src")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH", "")) if p
    )
    import freshcache

    if not str(freshcache.__file__).startswith(src):
        raise RuntimeError(f"the pinned copy is not the one imported: {freshcache.__file__}")
    print(f"pinned: measuring HEAD's src/ from {src}", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small counts (the default)")
    group.add_argument("--full", action="store_true", help="the real numbers")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(ROWS),
        metavar="ROW",
        help=f"run only this row (repeatable): {', '.join(ROWS)}",
    )
    parser.add_argument(
        "--output", default=str(RESULTS), help="directory for latest.json / latest.md"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="measure src/ exactly as committed at HEAD (a copy, also for every worker "
        "process and server), whatever happens to the working tree during the run",
    )
    args = parser.parse_args(argv)
    mode = FULL if args.full else QUICK
    import benchmarks.common

    benchmarks.common.OUTPUT = Path(args.output)  # plots beside latest.json
    rows = args.only or list(ROWS)
    began = time.perf_counter()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    import redis

    source_before = source_state()
    pinned = _pin_sources() if args.pin else None
    if pinned is not None:
        source_before = {
            "commit": source_before["commit"],
            "src_modified": False,
            "src_status": [],
            "pinned": True,
        }
    server = start_redis()
    admin = redis.Redis(host=server.host, port=server.port, socket_timeout=120)
    ctx = Context(mode, server, admin)
    results: list[RowResult] = []
    try:
        for name in rows:
            print(f"== {name} ({mode.name})", flush=True)
            row_began = time.perf_counter()
            try:
                module = importlib.import_module(ROWS[name])
                result: RowResult = module.run(ctx)
            except Exception:
                result = RowResult(name, error=traceback.format_exc())
                print(result.error, file=sys.stderr, flush=True)
            result.seconds = time.perf_counter() - row_began
            results.append(result)
            for table in result.tables:
                print(table.markdown(), flush=True)
            for target in result.targets:
                print("target:", " | ".join(target.as_row()), flush=True)
            print(f"-- {name}: {result.seconds:.1f} s", flush=True)
    finally:
        admin.close()
        server.stop()
        if pinned is not None:
            import shutil

            shutil.rmtree(pinned, ignore_errors=True)
    wall = time.perf_counter() - began
    source_after = source_state()
    meta = {
        "source": source_before,
        # Worker processes and servers import freshcache when they start: if src/ changed
        # during the run, rows may have measured different code.
        "source_changed_during_run": pinned is None and source_after != source_before,
        "mode": mode.name,
        "started": started,
        "wall_seconds": wall,
        "rows": rows,
        "environment": environment(server.version),
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "targets": [dataclasses.asdict(t) for r in results for t in r.targets],
        "rows": {
            r.row: {
                "seconds": r.seconds,
                "error": r.error,
                "data": r.data,
                "plots": r.plots,
                "tables": [dataclasses.asdict(t) for t in r.tables],
            }
            for r in results
        },
    }
    (out / "latest.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (out / "latest.md").write_text(_markdown(results, meta))
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}; wall time {wall:.1f} s")
    if meta["source_changed_during_run"]:
        print("WARNING: src/ changed during the run; rerun for consistent numbers")
    targets: list[Target] = [t for r in results for t in r.targets]
    for t in targets:
        print(
            f"  [{'MET' if t.met else 'MISSED' if t.met is False else '--'}] {t.name}: {t.measured}"
        )
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
