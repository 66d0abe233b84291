"""Demo data: deterministic, idempotent bookings (past and upcoming) for the dashboard.

Demo rows are recognised by their e-mail domain; seeding N makes sure there are at least N
of them, adding only the missing ones, each on a chef seat that is free.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import func, insert, select

from myhibachi.db import Database
from myhibachi.models import ACTIVE_STATUSES, Booking, BookingStatus, utcnow
from myhibachi.settings import Settings

DEMO_DOMAIN = "demo.myhibachi.test"
BATCH = 500

_FIRST = ["Aiko", "Ben", "Carmen", "Dev", "Elif", "Farah", "Gus", "Hana", "Ivan", "June", "Kai"]
_LAST = ["Tanaka", "Okafor", "Silva", "Patel", "Nguyen", "Müller", "Cohen", "Rossi", "Kim"]
_STREETS = ["Maple Ave", "Harbor Rd", "Sunset Blvd", "Oak St", "Lakeview Dr", "Mission St"]


async def count_demo(db: Database) -> int:
    async with db.read_session() as session:
        n = await session.scalar(
            select(func.count(Booking.id)).where(Booking.email.like(f"%@{DEMO_DOMAIN}"))
        )
    return int(n or 0)


def _cells(
    settings: Settings, today: dt.date, n: int, rng: random.Random
) -> Iterator[tuple[dt.date, str, int]]:
    """(day, slot, seat) cells in random order over a window with room for ``n`` bookings:
    mostly the past two years and the next few months, a few up to a year ahead."""
    per_day = len(settings.time_slots) * settings.chefs_per_slot
    past_days = max(730, -(-2 * n // per_day))
    future_days = min(settings.max_advance_days, 365)
    days = [today + dt.timedelta(days=d) for d in range(-past_days, future_days + 1)]
    weights = [8.0 if 0 < (d - today).days <= 45 else 1.0 for d in days]
    cumulative = list(itertools.accumulate(weights))
    seen: set[tuple[dt.date, str, int]] = set()
    while True:
        day = rng.choices(days, cum_weights=cumulative)[0]
        cell = (day, rng.choice(settings.time_slots), rng.randint(1, settings.chefs_per_slot))
        if cell not in seen:
            seen.add(cell)
            yield cell


def _row(
    index: int,
    cell: tuple[dt.date, str, int],
    today: dt.date,
    rng: random.Random,
    settings: Settings,
) -> dict[str, Any]:
    day, slot, seat = cell
    guests = rng.choice([6, 8, 10, 10, 12, 12, 15, 20, 25, 30, 40])
    if day <= today:
        status = BookingStatus.CONFIRMED if rng.random() < 0.9 else BookingStatus.CANCELLED
    else:
        status = rng.choices(
            [BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.CANCELLED],
            [0.35, 0.55, 0.10],
        )[0]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    now = utcnow()
    return {
        "customer_name": f"{first} {last}",
        "email": f"guest{index}@{DEMO_DOMAIN}",
        "phone": f"+1 415 555 {index % 10000:04d}",
        "event_date": day,
        "time_slot": slot,
        "guests": guests,
        "address": f"{rng.randint(1, 999)} {rng.choice(_STREETS)}, San Francisco, CA",
        "status": status.value,
        "price_cents": int(settings.price_for(guests, day) * 100),
        "chef_seat": seat,
        "created_at": now,
        "updated_at": now,
    }


async def seed_demo(
    db: Database,
    settings: Settings,
    bookings: int,
    *,
    today: dt.date | None = None,
    seed: int = 2025,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Make sure at least ``bookings`` demo bookings exist; return how many were added."""
    today = today or dt.date.today()
    existing = await count_demo(db)
    missing = max(bookings - existing, 0)
    if missing == 0:
        return 0
    rng = random.Random(f"{seed}:{existing}")
    async with db.read_session() as session:
        taken = {
            (d, s, seat)
            for d, s, seat in await session.execute(
                select(Booking.event_date, Booking.time_slot, Booking.chef_seat).where(
                    Booking.status.in_([s.value for s in ACTIVE_STATUSES])
                )
            )
        }
    cells = (c for c in _cells(settings, today, bookings, rng) if c not in taken)
    added = 0
    while added < missing:
        batch = [
            _row(existing + added + i, next(cells), today, rng, settings)
            for i in range(min(BATCH, missing - added))
        ]
        async with db.write_session() as session, session.begin():
            await session.execute(insert(Booking), batch)
        added += len(batch)
        if progress is not None:
            progress(len(batch))
    return added
