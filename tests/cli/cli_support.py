"""Helpers of the command-line tests: run the CLI in-process, plant keys, serve /metrics."""

from __future__ import annotations

import pytest

from freshcache.cli import main
from support.metrics_http import serve_metrics

__all__ = ["has_whole", "lines_of", "run", "serve_metrics"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines_of(out: str) -> list[str]:
    return [line.rstrip() for line in out.splitlines()]


def has_whole(out: str, text: str) -> bool:
    """``text`` appears unbroken on one line of ``out`` (not cut, not folded, not wrapped)."""
    return any(text in line for line in out.splitlines())
