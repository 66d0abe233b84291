"""``cache.bypass()``: a block inside which this cache's decorated reads call the function
and store nothing. The open blocks are a context variable, so each task and thread sees only
its own; invalidations are not affected."""

from __future__ import annotations

import contextvars
from types import TracebackType

#: The owners (engines) bypassed in the current context, innermost last. The hit path reads it
#: inline (``OPEN.get() and active(owner)``): one C call when no block is open.
OPEN: contextvars.ContextVar[tuple[object, ...]] = contextvars.ContextVar(
    "freshcache_bypassed", default=()
)
#: The bypass reason counted in stats for a read inside a block.
REASON = "bypass"


def active(owner: object) -> bool:
    """Is ``owner`` bypassed here? One context-variable read when no block is open."""
    bypassed = OPEN.get()
    return bool(bypassed) and owner in bypassed


class Bypass:
    """One ``with`` / ``async with`` block of ``owner``; nesting and re-entering are allowed."""

    __slots__ = ("_tokens", "owner")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self._tokens: list[contextvars.Token[tuple[object, ...]]] = []

    def __enter__(self) -> Bypass:
        self._tokens.append(OPEN.set((*OPEN.get(), self.owner)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        OPEN.reset(self._tokens.pop())

    async def __aenter__(self) -> Bypass:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
