"""Test infrastructure: private servers (`servers`) and a TCP fault-injection proxy (`proxy`).

Nothing here is part of freshcache; the fixtures in `tests/conftest.py` are built on it.
This module holds the one rule every test that needs a server binary follows:
`require("redis-server")` skips the test when the binary is missing, or fails it when the
environment says CI=true (or 1), because in CI a missing service is a broken build.
"""

from __future__ import annotations

import os
from typing import NoReturn

__all__ = ["ci_strict", "missing", "require"]


def ci_strict() -> bool:
    """True when CI is "true" or "1": missing services fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def missing(what: str) -> NoReturn:
    """Skip the current test because `what` is missing, or fail it under CI=true."""
    import pytest  # here, not at the top: servers.py must stay importable without pytest

    if ci_strict():
        pytest.fail(
            f"{what}; CI={os.environ.get('CI')} requires every service, so this fails "
            "instead of skipping (install it, or point the matching *_URL at a server)",
            pytrace=False,
        )
    pytest.skip(f"{what} (install it, or set the matching *_URL; with CI=true this fails)")


def require(*binaries: str) -> None:
    """Skip (or, under CI=true, fail) unless every binary is found by `which_or_none`."""
    from .servers import which_or_none

    absent = [name for name in binaries if which_or_none(name) is None]
    if absent:
        missing(f"{' and '.join(absent)} not found on PATH")
