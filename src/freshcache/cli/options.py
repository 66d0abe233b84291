"""Options shared by several commands, declared once."""

# No "from __future__ import annotations": typer reads these annotations at run time.

from typing import Annotated

import typer

from freshcache.cli.urls import DEFAULT_NAMESPACE

Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", metavar="NAME",
        help=f"key namespace (default: $FRESHCACHE_NAMESPACE or {DEFAULT_NAMESPACE!r})",
    ),
]  # fmt: skip
Timeout = Annotated[
    float,
    typer.Option(metavar="SECONDS", min=0.01, help="seconds to wait for the server per call"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
BackendUrl = Annotated[
    str,
    typer.Argument(
        metavar="URL", help="redis://host:port/db, rediss://..., or redis+cluster://host:port,...",
        show_default=False,
    ),
]  # fmt: skip
