"""``freshcache audit``: the static audit of a code base, optionally with live checks."""

# No "from __future__ import annotations": typer reads the parameter annotations at run time.

import enum
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from freshcache.cli.errors import CliError, guard
from freshcache.cli.options import Namespace, Timeout
from freshcache.cli.urls import namespace_or_default


class Format(enum.StrEnum):
    md = "md"
    json = "json"
    sarif = "sarif"


class FailOn(enum.StrEnum):
    error = "error"
    warning = "warning"
    never = "never"


def audit(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="Python files or folders to audit", show_default=False),
    ],
    format: Annotated[Format, typer.Option("--format", "-f", help="report format")] = Format.md,
    as_json: Annotated[bool, typer.Option("--json", help="the same as --format json")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="write here instead of stdout"),
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option(help="exit 1 when a finding of this severity (or worse) exists")
    ] = FailOn.error,
    ttl_min: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="shortest TTL allowed")
    ] = None,
    ttl_max: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="longest TTL allowed")
    ] = None,
    live: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="also check this Redis (redis://... or redis+cluster://...) live"
        ),
    ] = None,
    namespace: Namespace = None,
    metrics: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the service's /metrics URL, for hit ratios and breaker"),
    ] = None,
    sample: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="most keys the live scan reads")
    ] = None,
    timeout: Timeout = 5.0,
) -> None:
    """Audit cached reads and invalidations: tables, findings, verification checklist."""

    def body() -> int:
        from freshcache.audit import exit_status, load_config, run_audit, with_live
        from freshcache.audit.config import validate
        from freshcache.audit.model import Severity

        if as_json and format not in (Format.md, Format.json):
            raise CliError(f"--json and --format {format.value} ask for two formats; pick one")
        chosen = Format.json if as_json else format
        if metrics and not live:
            raise CliError("--metrics needs --live REDIS_URL")
        for path in paths:
            if not path.exists():
                raise CliError(f"{path}: no such file or directory")
        config = load_config(paths[0]).replace(ttl_min=ttl_min, ttl_max=ttl_max, live_sample=sample)
        validate(config)
        result = run_audit(paths, root=Path.cwd(), config=config)
        if live:
            import asyncio

            from freshcache.audit.live import live_report

            ns = namespace_or_default(namespace)
            report = asyncio.run(
                live_report(live, ns, result.reads, config, metrics, timeout, sampler=_sample)
            )
            result = with_live(result, report, config)
        text = render(result, chosen)
        if output is None:
            sys.stdout.write(text)
        else:
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
        counts = ", ".join(f"{result.count(s)} {s.value}(s)" for s in Severity)
        where = f" -> {output}" if output is not None else ""
        print(
            f"freshcache audit: {len(result.files)} file(s), {len(result.reads)} read(s), "
            f"{len(result.writes)} write(s); {len(result.unanalysed)} not analysed; "
            f"{counts}{where}",
            file=sys.stderr,
        )
        return exit_status(result, fail_on.value)

    raise typer.Exit(guard(body))


async def _sample(url: str, namespace: str, match: str, limit: int, call_timeout: float) -> Any:
    """The key sample of the live audit: the CLI's own (one server, or every primary of a
    Redis Cluster through freshcache's cluster backend), its errors as the report's."""
    from freshcache.audit.live import LiveError
    from freshcache.cli.scan import sample

    try:
        return await sample(url, namespace, match, limit, call_timeout)
    except CliError as exc:
        raise LiveError(str(exc)) from None


def render(result: Any, format: Format) -> str:
    if format is Format.json:
        from freshcache.audit.render_json import render_json

        return render_json(result)
    if format is Format.sarif:
        from freshcache.audit.render_sarif import render_sarif

        return render_sarif(result)
    from freshcache.audit.render_md import render_markdown

    return render_markdown(result)
