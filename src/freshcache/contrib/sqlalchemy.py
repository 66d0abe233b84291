"""After-commit invalidation for SQLAlchemy sessions (extra: ``freshcache[sqlalchemy]``).

    async with unit_of_work(session):          # begins (or joins) a transaction
        booking = await service.create_booking(data)   # @invalidate_cache(...) inside
    # committed here, and only then are the invalidations applied

An invalidation fired inside the transaction would let a reader reload the *old* rows
before the commit and cache them again; deferring it until after the commit closes that gap.
On an exception the transaction rolls back and the invalidations are dropped: nothing changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

try:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "freshcache.contrib.sqlalchemy needs SQLAlchemy 2: pip install 'freshcache[sqlalchemy]'"
    ) from exc

from freshcache.cache import Cache
from freshcache.config import get_cache

__all__ = ["sync_unit_of_work", "unit_of_work"]


@asynccontextmanager
async def unit_of_work(
    session: AsyncSession, cache: Cache | None = None
) -> AsyncIterator[AsyncSession]:
    """Commit ``session`` at the end of the block, then apply the block's invalidations."""
    target = cache if cache is not None else get_cache()
    async with target.deferred():
        if session.in_transaction():
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()
        else:
            async with session.begin():
                yield session
    # The deferred scope has exited after the commit: its invalidations are applied now.


@contextmanager
def sync_unit_of_work(session: Session, cache: Cache | None = None) -> Iterator[Session]:
    """The same for a synchronous ``Session``."""
    target = cache if cache is not None else get_cache()
    with target.deferred():
        if session.in_transaction():
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()
        else:
            with session.begin():
                yield session
