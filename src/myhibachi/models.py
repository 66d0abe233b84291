"""SQLAlchemy 2 models. The schema itself lives in migrations/ (Alembic); keep the two in step
(tests compare them)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import CheckConstraint, Date, DateTime, Index, Integer, String, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class BookingStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (BookingStatus.PENDING, BookingStatus.CONFIRMED)
# The predicate of the partial unique index; SQL text, identical on SQLite and PostgreSQL.
ACTIVE_PREDICATE = "status IN ('pending', 'confirmed')"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset: store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Booking(Base):
    """One catered event. ``chef_seat`` is which of the slot's chefs it takes (1..chefs):
    the partial unique index on (event_date, time_slot, chef_seat) over active bookings is
    what makes overbooking impossible, whatever the application does concurrently."""

    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(32))
    event_date: Mapped[dt.date] = mapped_column(Date)
    time_slot: Mapped[str] = mapped_column(String(5))
    guests: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default=BookingStatus.PENDING.value)
    price_cents: Mapped[int] = mapped_column(Integer)
    chef_seat: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'cancelled')", name="ck_bookings_status"
        ),
        CheckConstraint("guests BETWEEN 1 AND 100", name="ck_bookings_guests"),
        CheckConstraint("chef_seat >= 1", name="ck_bookings_chef_seat"),
        CheckConstraint("price_cents >= 0", name="ck_bookings_price"),
        # Availability of a day (WHERE event_date = ? AND active GROUP BY time_slot) is an
        # index-only scan of this index; it is also the no-overbooking constraint.
        Index(
            "uq_bookings_active_seat",
            "event_date",
            "time_slot",
            "chef_seat",
            unique=True,
            sqlite_where=text(ACTIVE_PREDICATE),
            postgresql_where=text(ACTIVE_PREDICATE),
        ),
        # Dashboard stats: counts/sums by status, upcoming events by date; list filters.
        Index("ix_bookings_status_event_date", "status", "event_date"),
        # Bookings per day and the list filtered by date across statuses.
        Index("ix_bookings_event_date", "event_date"),
        # Demo seeding finds its own rows by e-mail domain; lookups by customer e-mail.
        Index("ix_bookings_email", "email"),
    )
