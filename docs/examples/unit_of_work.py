"""Invalidate after the commit: a SQLAlchemy 2 (asyncio) service with one cached read.

tests/docs/test_examples.py runs it on SQLite (aiosqlite) and memory://.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from freshcache import cached, invalidate_cache
from freshcache.contrib.sqlalchemy import unit_of_work


class Base(DeclarativeBase):
    pass


class Booking(Base):
    __tablename__ = "bookings"
    id: Mapped[int] = mapped_column(primary_key=True)
    guests: Mapped[int]


@cached(ttl=300, key_prefix="booking:stats", exclude=("session",))
async def total_guests(session: AsyncSession) -> int:
    return (await session.scalar(select(func.coalesce(func.sum(Booking.guests), 0)))) or 0


@invalidate_cache("booking:stats:*")
async def add_booking(session: AsyncSession, guests: int) -> None:
    session.add(Booking(guests=guests))
    await session.flush()  # inside the transaction: the invalidation waits for the commit


async def book(session: AsyncSession, guests: int) -> None:
    """What a route does: the write in a unit of work."""
    async with unit_of_work(session):
        await add_booking(session, guests)
        if guests > 20:
            raise ValueError("parties above 20 guests are booked by phone")
    # Committed, then `booking:stats:*` invalidated. On the ValueError: rolled back, nothing
    # invalidated (nothing changed).
