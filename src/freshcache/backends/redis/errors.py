"""The one way a redis-py exception leaves the standalone backend: as the ``BackendError``
that ``backends.errors.classify`` names. The sync face wraps each call in ``TRANSLATED``; the
async face's connection gate (``Gate``) does the same on its way out, so the hit path pays for
one context manager, not two."""

from __future__ import annotations

from types import TracebackType

from freshcache.backends.errors import REDIS_ERRORS, classify
from freshcache.backends.slots import ConnectionSlots


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


class Gate(ConnectionSlots):
    """``ConnectionSlots`` that translates on the way out, so every ``async with gate:`` block
    leaves the async backend only with ``BackendError``."""

    __slots__ = ()

    async def __aexit__(self, *exc_info: object) -> None:
        await super().__aexit__(*exc_info)
        exc = exc_info[1]
        translate(exc if isinstance(exc, BaseException) else None)
