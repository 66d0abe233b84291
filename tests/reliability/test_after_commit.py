"""After-commit invalidation: inside a unit of work, invalidations wait for the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from freshcache import Cache
from freshcache.contrib.sqlalchemy import unit_of_work


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "counters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
    value: Mapped[int] = mapped_column(Integer)


async def test_deferred_scope_applies_on_success_and_drops_on_error(cache: Cache) -> None:
    version = 1

    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def read() -> int:
        return version

    @cache.invalidate_cache("booking:*")
    async def write(new: int) -> None:
        nonlocal version
        version = new

    assert await read() == 1

    async def failed_unit_of_work() -> None:
        async with cache.deferred():
            await write(2)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await failed_unit_of_work()
    version = 1  # the rollback restored the data; the cache was never touched
    assert await read() == 1
    assert cache.stats()["booking:stats"].stale == 0

    async with cache.deferred():
        await write(3)
        assert await read() == 1  # not yet committed: still the committed value's entry
        async with cache.deferred():  # nested: handed to the outer unit of work
            await write(3)
        assert await read() == 1
    assert await read() == 3  # applied at the end of the unit of work


@pytest.fixture
async def session_factory(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'uow.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session, session.begin():
        session.add(Counter(id=1, name="bookings", value=10))
    yield factory
    await engine.dispose()


async def test_sqlalchemy_unit_of_work_invalidates_after_commit_not_before(
    cache: Cache, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def read() -> int:
        async with session_factory() as session:
            return int(await session.scalar(select(Counter.value).where(Counter.id == 1)) or 0)

    written = asyncio.Event()
    committed = asyncio.Event()
    reader_done = asyncio.Event()
    seen_between: list[int] = []

    @cache.invalidate_cache("booking:stats:*")
    async def increment(session: AsyncSession) -> None:
        await session.execute(
            update(Counter).where(Counter.id == 1).values(value=Counter.value + 1)
        )

    async def writer() -> None:
        async with session_factory() as session, unit_of_work(session, cache):
            await increment(session)
            written.set()
            await reader_done.wait()  # a reader runs between the write and the commit
        committed.set()

    async def reader() -> None:
        await written.wait()
        seen_between.append(await read())
        reader_done.set()

    assert await read() == 10
    await asyncio.gather(writer(), reader())
    await committed.wait()
    # Between the write and the commit the reader saw (and may have cached) the committed 10;
    # the invalidation ran after the commit, so the next read sees 11.
    assert seen_between == [10]
    assert await read() == 11

    async def failed_transaction() -> None:
        async with session_factory() as session, unit_of_work(session, cache):
            await increment(session)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await failed_transaction()
    assert await read() == 11  # rolled back: nothing invalidated, nothing changed
    assert cache.stats()["booking:stats"].hits >= 1
