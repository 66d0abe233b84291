"""The ``freshcache`` command: the audit, and operations on a live cache.

    freshcache audit src/ --format sarif --output audit.sarif --fail-on warning
    freshcache audit src/ --live redis://127.0.0.1:6379/0 --namespace myhibachi \\
        --metrics http://127.0.0.1:8000/metrics
    freshcache stats http://127.0.0.1:8000/metrics --watch 2
    freshcache keys redis://127.0.0.1:6379/0 'booking:*' --namespace myhibachi
    freshcache invalidate redis://127.0.0.1:6379/0 'booking:stats:*' --namespace myhibachi
    freshcache inspect redis://127.0.0.1:6379/0 'booking:stats:...' --namespace myhibachi

typer and rich are the ``cli`` extra; they (and redis, prometheus_client) are imported when a
command runs, so a missing extra is a one-line hint and ``import freshcache.cli`` stays cheap.
Every expected failure (bad path, bad URL, unreachable server, malformed pattern) is one line
on stderr and exit status 2; a traceback is shown only with FRESHCACHE_DEBUG=1.
"""

# No "from __future__ import annotations": typer reads the parameter annotations at run time,
# and they refer to typer, which is imported inside build_app().

import asyncio
import enum
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

if TYPE_CHECKING:
    from rich.table import Table

    from freshcache.audit.live import KeySample, MetricsSnapshot

CLI_HINT = "freshcache: the command line needs typer and rich: pip install 'freshcache[cli]'"
DEFAULT_NAMESPACE = "freshcache"  # Cache's default; FRESHCACHE_NAMESPACE overrides it
T = TypeVar("T")


class Format(enum.StrEnum):
    md = "md"
    json = "json"
    sarif = "sarif"


class FailOn(enum.StrEnum):
    error = "error"
    warning = "warning"
    never = "never"


class CliError(Exception):
    """An expected failure, reported as one line."""


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]freshcache:[/] {escape(message)}"
    )


def _guard(action: Callable[[], T]) -> T:
    """Run a command body; expected errors become one line and exit status 2."""
    import typer

    from freshcache.audit import AuditInputError, ConfigError
    from freshcache.audit.live import LiveError

    try:
        return action()
    except (CliError, LiveError, AuditInputError, ConfigError) as exc:
        _fail(str(exc))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if os.environ.get("FRESHCACHE_DEBUG"):
            raise
        _fail(f"unexpected error: {type(exc).__name__}: {exc} (FRESHCACHE_DEBUG=1 shows more)")
        raise typer.Exit(3) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _namespace(value: str | None) -> str:
    return value or os.environ.get("FRESHCACHE_NAMESPACE") or DEFAULT_NAMESPACE


def _check_pattern(pattern: str) -> Any:
    from freshcache.tokens import classify

    try:
        return classify(pattern)
    except (ValueError, TypeError) as exc:
        detail = str(exc).removeprefix("freshcache: ")
        raise CliError(f"malformed pattern {pattern!r}: {detail}") from None


def _cache_url(url: str) -> None:
    """The operations go through freshcache's Cache, which also speaks redis+cluster://."""
    from freshcache.audit.live import LiveError, check_redis_url

    if url.startswith("redis+cluster://"):
        return
    try:
        check_redis_url(url)
    except LiveError as exc:
        raise CliError(str(exc)) from None


async def _open_cache(url: str, namespace: str, call_timeout: float) -> Any:
    from freshcache.audit.live import redact
    from freshcache.cache import Cache

    try:
        cache = Cache.from_url(url, namespace=namespace, timeout=call_timeout)
    except (ValueError, TypeError) as exc:
        detail = str(exc).removeprefix("freshcache: ")
        raise CliError(f"bad cache URL {redact(url)}: {detail}") from None
    if not await cache.ping():
        last = cache.health().get("last_error") or "no answer"
        await cache.aclose()
        raise CliError(f"cannot reach the cache backend at {redact(url)}: {last}")
    return cache


def _ttl(ttl_ms: int | None) -> str:
    if ttl_ms is None:
        return "no expiry"
    return f"{ttl_ms / 1000:.1f} s" if ttl_ms < 600_000 else f"{ttl_ms / 60_000:.0f} min"


def build_app() -> Any:
    import typer
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    app = typer.Typer(
        name="freshcache",
        help="freshcache: the cache-invalidation audit, and tools for a live cache.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    NamespaceOpt = Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n",
            help=f"key namespace (default: $FRESHCACHE_NAMESPACE or {DEFAULT_NAMESPACE!r})",
        ),
    ]  # fmt: skip
    TimeoutOpt = Annotated[
        float, typer.Option(min=0.01, help="seconds to wait for the server per call")
    ]

    @app.command()
    def audit(
        paths: Annotated[
            list[Path], typer.Argument(help="Python files or folders to audit", show_default=False)
        ],
        format: Annotated[Format, typer.Option("--format", "-f", help="report format")] = (
            Format.md
        ),
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
        ] = None,
        fail_on: Annotated[
            FailOn, typer.Option(help="exit 1 when a finding of this severity (or worse) exists")
        ] = FailOn.error,
        ttl_min: Annotated[float | None, typer.Option(help="shortest TTL allowed (s)")] = None,
        ttl_max: Annotated[float | None, typer.Option(help="longest TTL allowed (s)")] = None,
        live: Annotated[
            str | None, typer.Option(help="also check this Redis (redis://...) live")
        ] = None,
        namespace: NamespaceOpt = None,
        metrics: Annotated[
            str | None,
            typer.Option(help="the service's /metrics URL, for hit ratios and breaker state"),
        ] = None,
        sample: Annotated[
            int | None, typer.Option(min=1, help="most keys the live scan reads")
        ] = None,
        timeout: TimeoutOpt = 5.0,
    ) -> None:
        """Audit cached reads and invalidations: tables, findings, verification checklist."""

        def body() -> int:
            from freshcache.audit import exit_status, load_config, run_audit, with_live
            from freshcache.audit.config import validate

            if metrics and not live:
                raise CliError("--metrics needs --live REDIS_URL")
            for path in paths:
                if not path.exists():
                    raise CliError(f"{path}: no such file or directory")
            config = load_config(paths[0]).replace(
                ttl_min=ttl_min, ttl_max=ttl_max, live_sample=sample
            )
            validate(config)
            result = run_audit(paths, root=Path.cwd(), config=config)
            if live:
                from freshcache.audit.live import live_report

                report = _run(
                    live_report(live, _namespace(namespace), result.reads, config, metrics, timeout)
                )
                result = with_live(result, report, config)
            text = _render(result, format)
            if output is None:
                sys.stdout.write(text)
            else:
                try:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    output.write_text(text, encoding="utf-8")
                except OSError as exc:
                    raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
            from freshcache.audit.model import Severity

            counts = ", ".join(f"{result.count(s)} {s.value}(s)" for s in Severity)
            where = f" -> {output}" if output is not None else ""
            print(
                f"freshcache audit: {len(result.files)} file(s), {len(result.reads)} read(s), "
                f"{len(result.writes)} write(s); {counts}{where}",
                file=sys.stderr,
            )
            return exit_status(result, fail_on.value)

        raise typer.Exit(_guard(body))

    @app.command()
    def stats(
        url: Annotated[
            str, typer.Argument(help="http(s)://.../metrics of a service, or redis://...")
        ],
        namespace: NamespaceOpt = None,
        watch: Annotated[
            float | None, typer.Option(min=0.2, help="refresh every N seconds until Ctrl-C")
        ] = None,
        count: Annotated[
            int | None, typer.Option(min=1, help="with --watch: stop after N refreshes")
        ] = None,
        sample: Annotated[int, typer.Option(min=1, help="redis://: most keys to sample")] = 10_000,
        timeout: TimeoutOpt = 5.0,
    ) -> None:
        """Per-prefix counters and hit ratio (from /metrics), or keys and memory (from Redis)."""
        from freshcache.audit import live as live_mod

        def table() -> Table:
            if url.startswith(("http://", "https://")):
                snapshot = _run(live_mod.fetch_metrics(url, timeout))
                return _metrics_table(snapshot)
            sampled = _run(live_mod.sample_keys(url, _namespace(namespace), "*", sample, timeout))
            return _redis_table(sampled, _namespace(namespace))

        if watch is None:
            out.print(_guard(table))
            if not url.startswith(("http://", "https://")):
                out.print(
                    "[dim]Hit and miss counters live in each process, not in Redis: point "
                    "`freshcache stats` at the service's /metrics URL for them.[/]"
                )
            return
        from rich.live import Live

        def loop() -> None:
            import time

            done = 0
            with Live(table(), console=out, auto_refresh=False) as screen:
                while count is None or done < count - 1:
                    time.sleep(watch)
                    screen.update(table(), refresh=True)
                    done += 1

        _guard(loop)

    @app.command()
    def keys(
        url: Annotated[str, typer.Argument(help="redis://host:port/db")],
        pattern: Annotated[str, typer.Argument(help="glob relative to the namespace")] = "*",
        namespace: NamespaceOpt = None,
        limit: Annotated[int, typer.Option(min=1, max=100_000, help="most keys to list")] = 100,
        timeout: TimeoutOpt = 5.0,
    ) -> None:
        """List keys matching PATTERN (bounded SCAN) with their TTLs and sizes."""
        from freshcache.audit import live as live_mod

        def body() -> None:
            _check_pattern(pattern)
            ns = _namespace(namespace)
            sampled = _run(live_mod.sample_keys(url, ns, pattern, limit, timeout))
            grid = Table(title=f"{ns}:{pattern}", title_justify="left")
            grid.add_column("key (relative to the namespace)")
            grid.add_column("TTL", justify="right")
            grid.add_column("bytes", justify="right")
            for info in sampled.keys:
                ttl = _ttl(info.ttl_ms)
                grid.add_row(
                    info.key, f"[red]{ttl}[/]" if info.ttl_ms is None else ttl,
                    "-" if info.size is None else str(info.size),
                )  # fmt: skip
            out.print(grid)
            more = "" if sampled.complete else f" (limit {limit} reached: there are more)"
            out.print(f"{len(sampled.keys)} key(s){more}")

        _guard(body)

    @app.command()
    def invalidate(
        url: Annotated[str, typer.Argument(help="redis://host:port/db (or redis+cluster://)")],
        pattern: Annotated[str, typer.Argument(help="e.g. 'booking:stats:*'")],
        namespace: NamespaceOpt = None,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="do not ask before a broad pattern")
        ] = False,
        timeout: TimeoutOpt = 2.0,
    ) -> None:
        """Invalidate PATTERN through the generation mechanism (O(1) for aligned patterns)."""
        from freshcache.tokens import PatternKind

        def body() -> None:
            plan = _check_pattern(pattern)
            _cache_url(url)
            ns = _namespace(namespace)
            broad = plan.kind is PatternKind.SCAN or (
                plan.kind is PatternKind.GENERATION and len(plan.segments) <= 1
            )
            if broad and not yes:
                if not sys.stdin.isatty():
                    raise CliError(
                        f"{pattern!r} is a broad pattern; pass --yes to invalidate it "
                        "without a prompt"
                    )
                if not typer.confirm(
                    f"Invalidate every key matching {pattern!r} in namespace {ns!r}?"
                ):
                    raise CliError("not invalidated")

            async def go() -> int:
                cache = await _open_cache(url, ns, timeout)
                try:
                    await cache.invalidate(pattern)
                    return int(cache.health().get("pending_invalidations", 0))
                finally:
                    await cache.aclose()

            if _run(go()):
                raise CliError("the backend stopped answering: the invalidation was NOT applied")
            how = {
                PatternKind.GENERATION: "generation token replaced, O(1)",
                PatternKind.ENTRY: "entry replaced by a tombstone",
                PatternKind.SCAN: "not segment-aligned: SCAN + UNLINK of the keyspace",
            }[plan.kind]
            out.print(f"[green]invalidated[/] {ns}:{pattern} ({how})")

        _guard(body)

    @app.command()
    def inspect(
        url: Annotated[str, typer.Argument(help="redis://host:port/db (or redis+cluster://)")],
        key: Annotated[str, typer.Argument(help="a key, with or without the namespace")],
        namespace: NamespaceOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the raw answer")] = False,
        timeout: TimeoutOpt = 2.0,
    ) -> None:
        """Show one key: decoded value, stored and current tokens, validity. Exit 1 if absent."""

        def body() -> int:
            _cache_url(url)

            async def go() -> dict[str, Any]:
                cache = await _open_cache(url, _namespace(namespace), timeout)
                try:
                    info: dict[str, Any] = await cache.inspect(key)
                    return info
                finally:
                    await cache.aclose()

            info = _run(go())
            if as_json:
                sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
            else:
                out.print(_inspect_table(info))
            return 1 if info.get("state") == "absent" else 0

        raise typer.Exit(_guard(body))

    return app


def _render(result: Any, format: Format) -> str:
    if format is Format.json:
        from freshcache.audit.render_json import render_json

        return render_json(result)
    if format is Format.sarif:
        from freshcache.audit.render_sarif import render_sarif

        return render_sarif(result)
    from freshcache.audit.render_md import render_markdown

    return render_markdown(result)


def _metrics_table(snapshot: "MetricsSnapshot") -> "Table":
    from rich.table import Table

    grid = Table(title="freshcache counters (from /metrics)", title_justify="left")
    for name in ("prefix", "hits", "misses", "stale", "sets", "invalidations", "errors",
                 "bypasses", "hit ratio"):  # fmt: skip
        grid.add_column(name, justify="left" if name == "prefix" else "right")
    for p in snapshot.prefixes:
        ratio = "-" if p.hit_ratio is None else f"{p.hit_ratio:.1%}"
        if p.hit_ratio is not None and p.hit_ratio < 0.5:
            ratio = f"[yellow]{ratio}[/]"  # the original audit's alert level
        grid.add_row(
            p.prefix or "(none)", *(f"{v:g}" for v in (p.hits, p.misses, p.stale, p.sets,
            p.invalidations, p.errors, p.bypasses)), ratio,
        )  # fmt: skip
    breaker = snapshot.breaker_state or "not reported"
    pending = snapshot.pending_invalidations
    grid.caption = f"breaker: {breaker}; pending invalidations: " + (
        "not reported" if pending is None else str(pending)
    )
    return grid


def _redis_table(sampled: "KeySample", namespace: str) -> "Table":
    from rich.table import Table

    from freshcache.audit.live import group_of

    groups: dict[str, list[int]] = {}
    for info in sampled.keys:
        slot = groups.setdefault(group_of(info.key), [0, 0, 0])
        slot[0] += 1
        slot[1] += 1 if info.ttl_ms is None else 0
        slot[2] += info.size or 0
    grid = Table(title=f"keys of namespace {namespace!r} (sampled SCAN)", title_justify="left")
    for name in ("prefix", "keys", "without TTL", "bytes"):
        grid.add_column(name, justify="left" if name == "prefix" else "right")
    for prefix, (n, orphans, size) in sorted(groups.items(), key=lambda kv: -kv[1][2]):
        grid.add_row(prefix, str(n), f"[red]{orphans}[/]" if orphans else "0", str(size))
    grid.caption = f"{len(sampled.keys)} key(s)" + (
        "" if sampled.complete else " sampled: the scan stopped at the limit"
    )
    return grid


def _inspect_table(info: dict[str, Any]) -> "Table":
    from rich.table import Table

    grid = Table(show_header=False, title=str(info.get("key")), title_justify="left")
    grid.add_column("field", style="bold")
    grid.add_column("value")
    state = str(info.get("state"))
    colour = {"entry": "green", "tombstone": "yellow", "corrupt": "red"}.get(state, "dim")
    grid.add_row("state", f"[{colour}]{state}[/]")
    grid.add_row("valid", "[green]yes[/]" if info.get("valid") else "[red]no[/]")
    grid.add_row("TTL", _ttl(info.get("ttl_ms")) if state != "absent" else "-")
    grid.add_row("size", f"{info.get('size', 0)} bytes")
    stored = info.get("tokens_stored") or []
    current = info.get("tokens_current") or []
    for i, token in enumerate(stored):
        now = current[i] if i < len(current) else None
        mark = "" if token == now else f"  [red](current: {now})[/]"
        grid.add_row(f"token {i}", f"{token}{mark}")
    value = info.get("value")
    if value is not None:
        text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        grid.add_row("value", text if len(text) < 4000 else text[:4000] + "\n...")
    return grid


def main(argv: list[str] | None = None) -> int:
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        print(CLI_HINT, file=sys.stderr)
        return 2
    app = build_app()
    try:
        app(args=argv, prog_name="freshcache")
    except SystemExit as exc:  # typer/click end with sys.exit in standalone mode
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
