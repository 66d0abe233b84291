"""The ``freshcache`` command: the audit, and operations on a live cache.

    freshcache audit src/ --format sarif --output audit.sarif --fail-on warning
    freshcache audit src/ --live redis://127.0.0.1:6379/0 --namespace myhibachi \\
        --metrics http://127.0.0.1:8000/metrics
    freshcache stats http://127.0.0.1:8000/metrics --watch 2
    freshcache keys redis://127.0.0.1:6379/0 'booking:*' --namespace myhibachi
    freshcache invalidate redis://127.0.0.1:6379/0 'booking:stats:*' --namespace myhibachi
    freshcache inspect redis+cluster://10.0.0.1:7000 'booking:stats:...' --namespace myhibachi

The package is split by job: ``app`` wires the commands, ``audit_command`` and
``live_commands`` hold them, ``urls`` checks URLs and opens the cache, ``scan`` samples keys
on one server or on every primary of a cluster, ``render`` prints tables and JSON, ``errors``
turns expected failures into one line.

typer and rich are the ``cli`` extra; they (and redis, prometheus_client) are imported when a
command runs, so a missing extra is a one-line hint and ``import freshcache.cli`` stays cheap.
"""

from __future__ import annotations

import sys

CLI_HINT = "freshcache: the command line needs typer and rich: pip install 'freshcache[cli]'"

__all__ = ["CLI_HINT", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        print(CLI_HINT, file=sys.stderr)
        return 2
    from freshcache.cli.app import build_app

    app = build_app()
    try:
        app(args=argv, prog_name="freshcache")
    except SystemExit as exc:  # typer/click end with sys.exit in standalone mode
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
