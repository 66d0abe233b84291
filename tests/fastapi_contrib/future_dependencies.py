"""Dependencies written with postponed annotations: every annotation here is a string, which
freshcache (like FastAPI) evaluates in this module."""

from __future__ import annotations

from typing import Annotated

from fastapi import Cookie


class SessionFromCookie:
    """A class used as a dependency: FastAPI reads its ``__init__`` parameters."""

    def __init__(self, session: Annotated[str, Cookie()]) -> None:
        self.session = session
