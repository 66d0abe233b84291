"""The typer application: one place that lists the commands and their help settings."""

from __future__ import annotations

import typer

from freshcache.cli.audit_command import audit
from freshcache.cli.live_commands import inspect, invalidate, keys, stats


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="freshcache",
        help="freshcache: the cache-invalidation audit, and tools for a live cache.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain click help: no "<bool>" after flags, and help text (which quotes patterns
        # such as 'booking:*') is never read as Rich markup.
        rich_markup_mode=None,
    )
    for command in (audit, stats, keys, invalidate, inspect):
        app.command()(command)
    return app
