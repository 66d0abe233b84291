"""The one way a redis-py exception leaves the standalone backend: as the ``BackendError``
that ``backends.errors.classify`` names. The sync face wraps each call in ``TRANSLATED``; the
async face in ``async with GATE:``, the same translation as an async context manager. (The
bound on connections is the pools' ``ConnectionBudget``, not these.)"""

from __future__ import annotations

from types import TracebackType

from freshcache.backends.errors import REDIS_ERRORS, classify


def translate(exc: BaseException | None) -> None:
    """Raise the ``BackendError`` for a redis-py error; let anything else pass."""
    if isinstance(exc, REDIS_ERRORS):
        raise classify(exc) from exc


class Translated:
    """``with TRANSLATED:``: a class, not a generator-based context manager, because the sync
    hit path goes through it and a generator costs a microsecond."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        translate(exc)


TRANSLATED = Translated()


class Gate:
    """``async with GATE:``: every block leaves the async backend only with ``BackendError``."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        translate(exc)


GATE = Gate()
