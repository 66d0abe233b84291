"""Expected failures: one line on stderr and exit status 2, never a traceback.

A traceback is shown only with FRESHCACHE_DEBUG=1 (for bug reports).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.text import Text

T = TypeVar("T")

#: Exit statuses: 1 is reserved for "the command ran and found something" (audit findings,
#: an absent key), so expected failures use 2 and bugs 3.
EXIT_FAILED = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An expected failure, reported as one line."""


def fail(message: str) -> None:
    # The message may quote user input (keys, patterns, URLs): printed as data, never markup.
    line = Text("freshcache: ", style="bold red")
    line.append(message)
    Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True).print(line)


def guard(action: Callable[[], T]) -> T:
    """Run a command body; expected errors become one line and exit status 2."""
    from freshcache.audit import AuditInputError, ConfigError
    from freshcache.audit.live import LiveError

    try:
        return action()
    except (CliError, LiveError, AuditInputError, ConfigError) as exc:
        fail(str(exc))
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if os.environ.get("FRESHCACHE_DEBUG"):
            raise
        fail(f"unexpected error: {type(exc).__name__}: {exc} (FRESHCACHE_DEBUG=1 shows more)")
        raise typer.Exit(EXIT_BUG) from None
