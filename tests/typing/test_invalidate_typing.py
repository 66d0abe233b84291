"""``func.invalidate(...)`` is typed by the function's kind: a coroutine for ``async def``
(a forgotten ``await`` is a ``mypy --strict`` error, the one silent way to serve a stale entry),
``None`` for plain functions. Runs mypy, as a user's CI would, on a snippet."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = textwrap.dedent(
    """
    from freshcache import Cache, cached

    cache = Cache("memory://", namespace="typing")


    @cached(ttl="5m", key_prefix="t")
    async def fetch(n: int) -> int:
        return n


    @cache.cached(ttl=60, key_prefix="s", condition=lambda r: r > 0)
    def compute(n: int) -> int:
        return n


    class Service:
        @cached(ttl=60, key_prefix="svc")
        async def lookup(self, n: int) -> int:
            return n

        @cached(ttl=60, key_prefix="svc")
        def plain(self, n: int) -> int:
            return n


    async def forgotten() -> None:
        fetch.invalidate(1)  # LINE forgotten-await
        Service().lookup.invalidate(1)  # LINE forgotten-await-method


    async def correct() -> None:
        await fetch.invalidate(1)
        await Service().lookup.invalidate(2)
        compute.invalidate(3)
        Service().plain.invalidate(4)
        value: int = await fetch(5) + compute(6) + await Service().lookup(7)
        print(value)


    async def awaited_sync() -> None:
        await compute.invalidate(1)  # LINE await-sync
    """
)


def _line(marker: str) -> int:
    for number, text in enumerate(SNIPPET.splitlines(), start=1):
        if text.endswith(f"# LINE {marker}"):
            return number
    raise AssertionError(marker)


def test_mypy_strict_rejects_a_forgotten_await_and_nothing_else(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    stdout, stderr, _status = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--show-error-codes",
            "--no-pretty",
            str(snippet),
        ]
    )
    errors = sorted(
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"^[^:\n]*snippet\.py:(\d+): error: .*\[([a-z-]+)\]$", stdout, re.M)
    )
    assert errors == [
        (_line("forgotten-await"), "unused-coroutine"),
        (_line("forgotten-await-method"), "unused-coroutine"),
        (_line("await-sync"), "func-returns-value"),
        (_line("await-sync"), "misc"),  # None is not awaitable
    ], stdout + stderr
