"""Never overbook: concurrent requests for the last chef of a slot, on SQLite and PostgreSQL.

SQLite serialises writers (BEGIN IMMEDIATE); on PostgreSQL the partial unique index on
(event_date, time_slot, chef_seat) refuses the second insert of a seat. The interleaving test
forces both requests past the Python check before either inserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable

import httpx
import pytest
from hibachi_support import active_count, app_state, booking_payload, future, running_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from myhibachi.models import Booking
from myhibachi.services.bookings import BookingService
from myhibachi.settings import Settings


async def _race(c: httpx.AsyncClient, n: int, day: str, slot: str) -> list[int]:
    responses = await asyncio.gather(
        *(
            c.post("/api/bookings", json=booking_payload(event_date=day, time_slot=slot))
            for _ in range(n)
        )
    )
    return sorted(r.status_code for r in responses)


async def test_two_creates_for_the_last_seat(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(database_url, chefs_per_slot=1)) as (_, c):
        day = future(3).isoformat()
        assert await _race(c, 2, day, "18:00") == [201, 409]
        assert await active_count(app_state(c).db, dt.date.fromisoformat(day), "18:00") == 1


async def test_many_creates_fill_a_slot_exactly(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(database_url, chefs_per_slot=3)) as (_, c):
        day = future(4).isoformat()
        assert await _race(c, 8, day, "12:00") == [201] * 3 + [409] * 5
        assert await active_count(app_state(c).db, dt.date.fromisoformat(day), "12:00") == 3
        seats = (await c.get("/api/bookings", params={"date": day})).json()["items"]
        assert sorted(b["chef_seat"] for b in seats) == [1, 2, 3]


async def test_both_past_the_check_before_either_inserts(
    database_url: str, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests read "seat 1 is free" before either writes. On PostgreSQL only the
    constraint can stop the second (it retries and finds the slot full); on SQLite the second
    cannot even read until the first commits, so the rendezvous times out."""
    original = BookingService._free_seat
    arrived = 0
    both_read = asyncio.Event()
    calls = 0

    async def rendezvous(self: BookingService, *args: object) -> int | None:
        nonlocal arrived, calls
        calls += 1
        seat = await original(self, *args)  # type: ignore[arg-type]
        arrived += 1
        if arrived == 2:
            both_read.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both_read.wait(), 1.0)
        return seat

    monkeypatch.setattr(BookingService, "_free_seat", rendezvous)
    async with running_app(make_settings(database_url, chefs_per_slot=1)) as (_, c):
        day = future(6).isoformat()
        assert await _race(c, 2, day, "15:00") == [201, 409]
        assert await active_count(app_state(c).db, dt.date.fromisoformat(day), "15:00") == 1
    if database_url.startswith("postgresql"):
        assert calls == 3  # the loser was refused by the index, read again, found it full
    else:
        assert calls == 2  # serialised: the loser's only read already saw the slot full


async def test_the_database_itself_refuses_a_double_booked_chef(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(database_url)) as (_, c):
        db = app_state(c).db
        first = (await c.post("/api/bookings", json=booking_payload())).json()
        async with db.write_session() as session:
            twin = await session.get(Booking, first["id"])
            assert twin is not None
            clone = Booking(
                **{
                    col: getattr(twin, col)
                    for col in (
                        "customer_name",
                        "email",
                        "phone",
                        "event_date",
                        "time_slot",
                        "guests",
                        "address",
                        "status",
                        "price_cents",
                        "chef_seat",
                    )
                }
            )
            session.add(clone)
            with pytest.raises(IntegrityError):
                await session.commit()
        async with db.read_session() as session:
            assert await session.scalar(select(func.count(Booking.id))) == 1
