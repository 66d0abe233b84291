"""Units of work: invalidations issued inside one wait until it ends without an error (after
the caller's commit), and are dropped if it raises. Nested units hand theirs to the outermost
one of the same engine. The open units are a context variable, so tasks and threads each see
their own."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from freshcache._engine.invalidation import Prepared

ApplyAsync = Callable[[list[Prepared]], Awaitable[None]]
ApplySync = Callable[[list[Prepared]], None]


class Scope:
    """One unit of work of ``owner`` (an engine): ``async with`` or ``with``."""

    __slots__ = ("_apply_async", "_apply_sync", "_token", "after", "owner", "patterns")

    def __init__(self, owner: object, apply_async: ApplyAsync, apply_sync: ApplySync) -> None:
        self.owner = owner
        self._apply_async = apply_async
        self._apply_sync = apply_sync
        self.patterns: list[Prepared] = []
        self.after: list[Callable[[], Any]] = []  # re-warming, run once they are applied
        self._token: contextvars.Token[tuple[Scope, ...]] | None = None

    def defer(self, prepared: list[Prepared]) -> None:
        self.patterns.extend(prepared)

    def run_after(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` once this unit's invalidations have been applied."""
        self.after.append(callback)

    def _enter(self) -> Scope:
        self._token = _SCOPES.set((*_SCOPES.get(), self))
        return self

    def _leave(self, failed: bool) -> bool:
        """Leave the scope; True when this scope must apply its invalidations now."""
        assert self._token is not None
        _SCOPES.reset(self._token)
        if failed:
            return False  # rolled back: nothing changed, nothing to invalidate
        outer = current(self.owner)
        if outer is not None:
            outer.patterns.extend(self.patterns)  # the outer unit of work commits later
            outer.after.extend(self.after)
            return False
        return True

    async def __aenter__(self) -> Scope:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._leave(exc_type is not None):
            await self._apply_async(self.patterns)
            for callback in self.after:
                produced = callback()
                if inspect.isawaitable(produced):
                    await produced

    def __enter__(self) -> Scope:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._leave(exc_type is not None):
            self._apply_sync(self.patterns)
            for callback in self.after:
                callback()


_SCOPES: contextvars.ContextVar[tuple[Scope, ...]] = contextvars.ContextVar(
    "freshcache_scopes", default=()
)


def current(owner: object) -> Scope | None:
    """The innermost open unit of work of ``owner`` in this context, if any."""
    for scope in reversed(_SCOPES.get()):
        if scope.owner is owner:
            return scope
    return None
