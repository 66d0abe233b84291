"""BookingService: the two cached reads and the three invalidating writes of the audited
system, with the audit's granular invalidation.

Reads open their own short read session. Writes take the caller's session and do not
commit: the caller wraps them in ``freshcache.contrib.sqlalchemy.unit_of_work(session)``,
which commits and only then applies the invalidations the decorators collected.
"""

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import freshcache
from freshcache import cached, invalidate_cache
from myhibachi.db import Database
from myhibachi.models import ACTIVE_STATUSES, Booking, BookingStatus, utcnow
from myhibachi.observability import note_miss, note_read
from myhibachi.schemas import (
    AvailabilityRange,
    BookingCreate,
    BookingOut,
    BookingPage,
    DashboardStats,
    DayAvailability,
    DayCount,
    SlotAvailability,
    StatusCounts,
)
from myhibachi.services.errors import Conflict, InvalidInput, NotFound
from myhibachi.settings import Settings

CENT = Decimal("0.01")
STATS_PREFIX = "booking:stats"
AVAILABILITY_PREFIX = "booking:availability:{event_date}"
UPCOMING_DAYS = 30


def booking_invalidations(result: BookingOut, **arguments: Any) -> list[str]:
    """What a booking write invalidates, after its transaction commits.

    granular (default, the audit's recommendation): the stats and the booking's own day of
    availability. broad (``MYHIBACHI_INVALIDATION=broad``): ``booking:*``, the audited
    original, kept so the two can be compared.
    """
    service = arguments.get("self")
    if isinstance(service, BookingService) and service.settings.invalidation == "broad":
        return ["booking:*"]
    return [
        "booking:stats:*",
        freshcache.pattern("booking", "availability", result.event_date, "*"),
    ]


def to_out(booking: Booking) -> BookingOut:
    return BookingOut(
        id=booking.id,
        customer_name=booking.customer_name,
        email=booking.email,
        phone=booking.phone,
        event_date=booking.event_date,
        time_slot=booking.time_slot,
        guests=booking.guests,
        address=booking.address,
        status=BookingStatus(booking.status),
        price=(Decimal(booking.price_cents) / 100).quantize(CENT),
        chef_seat=booking.chef_seat,
        created_at=booking.created_at,
        updated_at=booking.updated_at,
    )


class BookingService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.db = db
        self.settings = settings
        self.today = today

    # ----------------------------------------------------------------- cached reads

    @cached(ttl=300, key_prefix=STATS_PREFIX)
    async def get_dashboard_stats(self) -> DashboardStats:
        """Counts by status, guests, confirmed revenue, upcoming events: SQL aggregates."""
        note_miss(STATS_PREFIX)
        today = self.today()
        in_7 = today + dt.timedelta(days=7)
        in_30 = today + dt.timedelta(days=UPCOMING_DAYS)
        active = Booking.status.in_([s.value for s in ACTIVE_STATUSES])

        def count_if(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        upcoming = and_(active, Booking.event_date >= today)
        totals = select(
            func.count(Booking.id),
            count_if(Booking.status == BookingStatus.PENDING.value),
            count_if(Booking.status == BookingStatus.CONFIRMED.value),
            count_if(Booking.status == BookingStatus.CANCELLED.value),
            func.coalesce(func.sum(case((active, Booking.guests), else_=0)), 0),
            func.avg(case((active, Booking.guests), else_=None)),
            func.coalesce(
                func.sum(
                    case(
                        (Booking.status == BookingStatus.CONFIRMED.value, Booking.price_cents),
                        else_=0,
                    )
                ),
                0,
            ),
            count_if(and_(upcoming, Booking.event_date < in_7)),
            count_if(and_(upcoming, Booking.event_date < in_30)),
        )
        per_day = (
            select(Booking.event_date, func.count(Booking.id), func.sum(Booking.guests))
            .where(active, Booking.event_date >= today, Booking.event_date < in_30)
            .group_by(Booking.event_date)
        )
        async with self.db.read_session() as session:
            row = (await session.execute(totals)).one()
            days = {d: (int(n), int(g)) for d, n, g in await session.execute(per_day)}
        total, pending, confirmed, cancelled, guests, avg, revenue, next_7, next_30 = row
        return DashboardStats(
            as_of=today,
            total_bookings=int(total),
            by_status=StatusCounts(
                pending=int(pending), confirmed=int(confirmed), cancelled=int(cancelled)
            ),
            total_guests=int(guests),
            average_guests=round(float(avg), 2) if avg is not None else 0.0,
            confirmed_revenue=(Decimal(int(revenue)) / 100).quantize(CENT),
            events_next_7_days=int(next_7),
            events_next_30_days=int(next_30),
            bookings_per_day=[
                DayCount(
                    date=day, bookings=days.get(day, (0, 0))[0], guests=days.get(day, (0, 0))[1]
                )
                for day in (today + dt.timedelta(days=i) for i in range(UPCOMING_DAYS))
            ],
        )

    @cached(ttl=60, key_prefix=AVAILABILITY_PREFIX)
    async def get_available_slots(self, event_date: dt.date) -> DayAvailability:
        """Remaining capacity per slot of one day (cached per date)."""
        note_miss(AVAILABILITY_PREFIX)
        query = (
            select(Booking.time_slot, Booking.status, func.count(Booking.id))
            .where(
                Booking.event_date == event_date,
                Booking.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
            .group_by(Booking.time_slot, Booking.status)
        )
        async with self.db.read_session() as session:
            counts = {(slot, status): int(n) for slot, status, n in await session.execute(query)}
        capacity = self.settings.chefs_per_slot
        slots = []
        for slot in self.settings.time_slots:
            pending = counts.get((slot, BookingStatus.PENDING.value), 0)
            confirmed = counts.get((slot, BookingStatus.CONFIRMED.value), 0)
            slots.append(
                SlotAvailability(
                    time_slot=slot,
                    capacity=capacity,
                    pending=pending,
                    confirmed=confirmed,
                    remaining=max(capacity - pending - confirmed, 0),
                )
            )
        return DayAvailability(
            date=event_date,
            slots=slots,
            capacity=capacity * len(slots),
            remaining=sum(s.remaining for s in slots),
        )

    async def get_availability_range(self, start: dt.date, end: dt.date) -> AvailabilityRange:
        """Availability of ``start..end`` inclusive, composed of the cached days."""
        if end < start:
            raise InvalidInput("end", "must not be before start", location="query")
        if (end - start).days + 1 > self.settings.max_range_days:
            raise InvalidInput(
                "end",
                f"the range may span at most {self.settings.max_range_days} days",
                location="query",
            )
        days = []
        for offset in range((end - start).days + 1):
            note_read(AVAILABILITY_PREFIX)
            day: DayAvailability = await self.get_available_slots(start + dt.timedelta(offset))
            days.append(day)
        return AvailabilityRange(start=start, end=end, days=days)

    # -------------------------------------------------------------- plain reads

    async def get_booking(self, booking_id: int) -> BookingOut:
        async with self.db.read_session() as session:
            booking = await session.get(Booking, booking_id)
            if booking is None:
                raise NotFound(f"booking {booking_id} does not exist")
            return to_out(booking)

    async def list_bookings(
        self,
        *,
        status: BookingStatus | None = None,
        event_date: dt.date | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> BookingPage:
        conditions = []
        if status is not None:
            conditions.append(Booking.status == status.value)
        if event_date is not None:
            conditions.append(Booking.event_date == event_date)
        async with self.db.read_session() as session:
            total = await session.scalar(select(func.count(Booking.id)).where(*conditions))
            rows = await session.scalars(
                select(Booking)
                .where(*conditions)
                .order_by(Booking.event_date, Booking.time_slot, Booking.id)
                .limit(page_size)
                .offset((page - 1) * page_size)
            )
            items = [to_out(b) for b in rows]
        return BookingPage(items=items, total=int(total or 0), page=page, page_size=page_size)

    # ------------------------------------------------------- invalidating writes

    def validate_request(self, data: BookingCreate) -> None:
        """The checks that need the settings and the clock (pydantic did the rest)."""
        today = self.today()
        if data.event_date <= today:
            raise InvalidInput("event_date", "must be in the future")
        if data.event_date > today + dt.timedelta(days=self.settings.max_advance_days):
            raise InvalidInput(
                "event_date", f"must be within {self.settings.max_advance_days} days from today"
            )
        if data.time_slot not in self.settings.time_slots:
            raise InvalidInput(
                "time_slot", f"unknown slot; one of {', '.join(self.settings.time_slots)}"
            )

    @invalidate_cache(booking_invalidations)
    async def create_booking(self, session: AsyncSession, data: BookingCreate) -> BookingOut:
        """Book one chef of the slot, or raise Conflict when all its chefs are taken."""
        self.validate_request(data)
        price = self.settings.price_for(data.guests, data.event_date)
        # Each attempt takes the lowest free chef seat. The partial unique index refuses a
        # seat that a concurrent transaction took after our read (on PostgreSQL the insert
        # waits for that transaction and fails once it commits); then we read again. On
        # SQLite the write session's BEGIN IMMEDIATE already serialised us.
        for _ in range(self.settings.chefs_per_slot + 1):
            seat = await self._free_seat(session, data.event_date, data.time_slot)
            if seat is None:
                break
            booking = Booking(
                customer_name=data.customer_name,
                email=str(data.email),
                phone=data.phone,
                event_date=data.event_date,
                time_slot=data.time_slot,
                guests=data.guests,
                address=data.address,
                status=BookingStatus.PENDING.value,
                price_cents=int(price * 100),
                chef_seat=seat,
            )
            try:
                async with session.begin_nested():
                    session.add(booking)
            except IntegrityError:
                continue
            return to_out(booking)
        raise Conflict(
            f"no chef is free on {data.event_date.isoformat()} at {data.time_slot}: slot is full"
        )

    async def _free_seat(self, session: AsyncSession, day: dt.date, slot: str) -> int | None:
        taken = set(
            await session.scalars(
                select(Booking.chef_seat).where(
                    Booking.event_date == day,
                    Booking.time_slot == slot,
                    Booking.status.in_([s.value for s in ACTIVE_STATUSES]),
                )
            )
        )
        return next((s for s in range(1, self.settings.chefs_per_slot + 1) if s not in taken), None)

    @invalidate_cache(booking_invalidations)
    async def confirm_booking(self, session: AsyncSession, booking_id: int) -> BookingOut:
        """pending -> confirmed; anything else is a Conflict."""
        return await self._transition(
            session, booking_id, BookingStatus.CONFIRMED, allowed=(BookingStatus.PENDING,)
        )

    @invalidate_cache(booking_invalidations)
    async def cancel_booking(self, session: AsyncSession, booking_id: int) -> BookingOut:
        """pending or confirmed -> cancelled, which frees the chef."""
        return await self._transition(
            session, booking_id, BookingStatus.CANCELLED, allowed=ACTIVE_STATUSES
        )

    async def _transition(
        self,
        session: AsyncSession,
        booking_id: int,
        target: BookingStatus,
        *,
        allowed: tuple[BookingStatus, ...],
    ) -> BookingOut:
        booking = await session.get(Booking, booking_id, with_for_update=True)
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        if BookingStatus(booking.status) not in allowed:
            raise Conflict(f"booking {booking_id} is {booking.status}; cannot become {target}")
        booking.status = target.value
        booking.updated_at = utcnow()
        await session.flush()
        return to_out(booking)
