"""The commands that work on a live cache: ``stats``, ``keys``, ``invalidate``, ``inspect``.

Each takes a Redis or Redis Cluster URL (``stats`` also a service's /metrics URL), prints a
table or, with ``--json``, a JSON document, and reports expected failures in one line.
"""

# No "from __future__ import annotations": typer reads the parameter annotations at run time.

import asyncio
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.text import Text

from freshcache.cli import render
from freshcache.cli.errors import CliError, guard
from freshcache.cli.options import AsJson, BackendUrl, Namespace, Timeout
from freshcache.cli.scan import sample
from freshcache.cli.urls import (
    check_backend_url,
    check_pattern,
    is_metrics,
    namespace_or_default,
    open_cache,
)

METRICS_HINT = (
    "Hit and miss counters live in each process, not in Redis: point `freshcache stats` at "
    "the service's /metrics URL for them."
)


def stats(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            show_default=False,
            help="http(s)://.../metrics of a service, or redis://..., redis+cluster://...",
        ),
    ],
    namespace: Namespace = None,
    watch: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", min=0.2, help="refresh every N seconds until Ctrl-C"),
    ] = None,
    count: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="with --watch: stop after N refreshes")
    ] = None,
    limit: Annotated[
        int, typer.Option("--sample", metavar="N", min=1, help="redis: most keys to sample")
    ] = 10_000,
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
) -> None:
    """Per-prefix counters and hit ratio (from /metrics), or keys and memory (from Redis)."""
    out = render.console()
    source = _StatsSource(url, namespace_or_default(namespace), limit, timeout, out.width)
    if watch is None:
        guard(lambda: _print_stats(source, out, as_json))
    else:
        guard(lambda: _watch_stats(source, out, as_json, watch, count))


class _StatsSource:
    """Where ``stats`` reads from, and one reading as a JSON document and as a table."""

    def __init__(self, url: str, namespace: str, limit: int, timeout: float, width: int) -> None:
        self.url = url
        self.namespace = namespace
        self.limit = limit
        self.timeout = timeout
        self.width = width
        self.from_metrics = is_metrics(url)

    def read(self) -> tuple[dict[str, Any], RenderableType]:
        from freshcache.audit.live import fetch_metrics

        if self.from_metrics:
            metrics = asyncio.run(fetch_metrics(self.url, self.timeout))
            return render.metrics_document(metrics), render.metrics_table(metrics, self.width)
        ns = self.namespace
        sampled = asyncio.run(sample(self.url, ns, "*", self.limit, self.timeout))
        return render.redis_document(sampled, ns), render.redis_table(sampled, ns, self.width)


def _print_stats(source: _StatsSource, out: Console, as_json: bool) -> None:
    document, table = source.read()
    if as_json:
        render.print_json(document)
        return
    out.print(table)
    if not source.from_metrics:
        out.print(Text(METRICS_HINT, style="dim"))


def _watch_stats(
    source: _StatsSource, out: Console, as_json: bool, every: float, count: int | None
) -> None:
    """Refresh until Ctrl-C (or ``count`` readings); JSON goes out as one line per reading."""
    from rich.live import Live

    def more(done: int) -> bool:
        return count is None or done < count

    done = 1
    if as_json:
        render.print_json(source.read()[0], compact=True)
        while more(done):
            time.sleep(every)
            render.print_json(source.read()[0], compact=True)
            done += 1
        return
    with Live(source.read()[1], console=out, auto_refresh=False) as screen:
        while more(done):
            time.sleep(every)
            screen.update(source.read()[1], refresh=True)
            done += 1


def keys(
    url: BackendUrl,
    pattern: Annotated[
        str, typer.Argument(metavar="PATTERN", help="glob relative to the namespace")
    ] = "*",
    namespace: Namespace = None,
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=100_000, help="most keys to list")
    ] = 100,
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
) -> None:
    """List keys matching PATTERN (bounded SCAN, every primary of a cluster), TTLs and sizes."""

    def body() -> None:
        check_pattern(pattern)
        ns = namespace_or_default(namespace)
        sampled = asyncio.run(sample(url, ns, pattern, limit, timeout))
        if as_json:
            render.print_json(render.keys_document(sampled, ns, pattern))
            return
        out = render.console()
        out.print(Text(render.printable(f"{ns}:{pattern}"), style="bold"), soft_wrap=True)
        for line in render.key_lines(sampled):
            out.print(line, soft_wrap=True)  # never wrapped: keys paste back whole
        more = ""
        if not sampled.complete:
            more = (
                f" (limit {limit} reached: there are more)"
                if len(sampled.keys) >= limit
                else " (scan bound reached first: there may be more)"
            )
        out.print(f"{len(sampled.keys)} key(s) (relative to the namespace){more}")

    guard(body)


def invalidate(
    url: BackendUrl,
    pattern: Annotated[
        str, typer.Argument(metavar="PATTERN", help="e.g. 'booking:stats:*'", show_default=False)
    ],
    namespace: Namespace = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="do not ask before a broad pattern")
    ] = False,
    as_json: AsJson = False,
    timeout: Timeout = 2.0,
) -> None:
    """Invalidate PATTERN through the generation mechanism (O(1) for aligned patterns)."""
    from freshcache.tokens import PatternKind

    def body() -> None:
        plan = check_pattern(pattern)
        check_backend_url(url)
        ns = namespace_or_default(namespace)
        broad = plan.kind is PatternKind.SCAN or (
            plan.kind is PatternKind.GENERATION and len(plan.segments) <= 1
        )
        if broad and not yes:
            if not sys.stdin.isatty():
                raise CliError(
                    f"{pattern!r} is a broad pattern; pass --yes to invalidate it without a prompt"
                )
            if not typer.confirm(f"Invalidate every key matching {pattern!r} in namespace {ns!r}?"):
                raise CliError("not invalidated")

        if asyncio.run(_invalidate(url, ns, pattern, timeout)):
            raise CliError("the backend stopped answering: the invalidation was NOT applied")
        how = {
            PatternKind.GENERATION: "generation token replaced, O(1)",
            PatternKind.ENTRY: "entry replaced by a tombstone",
            PatternKind.SCAN: "not segment-aligned: SCAN + UNLINK of the keyspace",
        }[plan.kind]
        if as_json:
            render.print_json(
                {"namespace": ns, "pattern": pattern, "kind": plan.kind.value, "applied": True}
            )
            return
        line = Text("invalidated ", style="green")
        line.append(render.printable(f"{ns}:{pattern}"))
        line.append(f" ({how})")
        render.console().print(line, soft_wrap=True)

    guard(body)


def inspect(
    url: BackendUrl,
    key: Annotated[
        str,
        typer.Argument(
            metavar="KEY", help="a key, with or without the namespace", show_default=False
        ),
    ],
    namespace: Namespace = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw answer as JSON")] = False,
    timeout: Timeout = 2.0,
) -> None:
    """Show one key: decoded value, stored and current tokens, validity. Exit 1 if absent."""

    def body() -> int:
        check_backend_url(url)

        info = asyncio.run(_inspect(url, namespace_or_default(namespace), key, timeout))
        if as_json:
            render.print_json(info)
        else:
            out = render.console()
            out.print(Text(render.printable(str(info.get("key"))), style="bold"), soft_wrap=True)
            out.print(render.inspect_table(info))
        return 1 if info.get("state") == "absent" else 0

    raise typer.Exit(guard(body))


async def _invalidate(url: str, namespace: str, pattern: str, call_timeout: float) -> int:
    """Apply the invalidation; returns how many are still pending (0: applied)."""
    cache = await open_cache(url, namespace, call_timeout)
    try:
        await cache.invalidate(pattern)
        return int(cache.health().get("pending_invalidations", 0))
    finally:
        await cache.aclose()


async def _inspect(url: str, namespace: str, key: str, call_timeout: float) -> dict[str, Any]:
    cache = await open_cache(url, namespace, call_timeout)
    try:
        return await cache.inspect(key)
    finally:
        await cache.aclose()
