"""/api routes: stats, availability, bookings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, status

from freshcache.contrib.sqlalchemy import unit_of_work
from myhibachi.api.content_type import JSON_ONLY, require_json
from myhibachi.api.state import AppState, get_state
from myhibachi.models import BookingStatus
from myhibachi.observability import note_read
from myhibachi.schemas import (
    AvailabilityRange,
    BookingCreate,
    BookingOut,
    BookingPage,
    DashboardStats,
    DayAvailability,
)
from myhibachi.services.bookings import AVAILABILITY_PREFIX, STATS_PREFIX
from myhibachi.services.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["bookings"])

State = Annotated[AppState, Depends(get_state)]
BookingId = Annotated[int, Path(ge=1, le=2_147_483_647, description="booking id")]

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown booking id"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "illegal status transition, or the slot is full"}
}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"description": "the request body is larger than the service's limit"}
}


def _in_window(state: AppState, field: str, value: dt.date) -> dt.date:
    """Availability is served from a year back to the end of the booking window."""
    today = state.service.today()
    low = today - dt.timedelta(days=365)
    high = today + dt.timedelta(days=state.settings.max_advance_days)
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}", location="query")
    return value


@router.get("/stats", summary="Dashboard statistics (cached 300 s)")
async def stats(state: State) -> DashboardStats:
    note_read(STATS_PREFIX)
    # A cached method called through an instance is typed as returning Any by freshcache.
    result: DashboardStats = await state.service.get_dashboard_stats()
    return result


@router.get(
    "/availability",
    summary="Remaining chefs per slot: one day (?date=) or a range (?start=&end=)",
)
async def availability(
    state: State,
    day: Annotated[dt.date | None, Query(alias="date", description="one day")] = None,
    start: Annotated[dt.date | None, Query(description="first day of a range")] = None,
    end: Annotated[dt.date | None, Query(description="last day of a range (inclusive)")] = None,
) -> DayAvailability | AvailabilityRange:
    if day is not None:
        if start is not None or end is not None:
            raise InvalidInput("date", "give either date or start and end", location="query")
        note_read(AVAILABILITY_PREFIX)
        one: DayAvailability = await state.service.get_available_slots(
            _in_window(state, "date", day)
        )
        return one
    if start is None:
        raise InvalidInput("date", "give date, or start and end", location="query")
    if end is None:
        raise InvalidInput("end", "is required with start", location="query")
    return await state.service.get_availability_range(
        _in_window(state, "start", start), _in_window(state, "end", end)
    )


@router.post(
    "/bookings",
    status_code=status.HTTP_201_CREATED,
    responses={**CONFLICT, **TOO_LARGE, **JSON_ONLY},
    dependencies=[Depends(require_json)],
    summary="Book a chef for an event",
)
async def create_booking(data: BookingCreate, state: State) -> BookingOut:
    async with state.db.write_session() as session, unit_of_work(session):
        return await state.service.create_booking(session, data)


@router.get("/bookings", summary="List bookings, filtered by status and event date")
async def list_bookings(
    state: State,
    status_: Annotated[BookingStatus | None, Query(alias="status")] = None,
    day: Annotated[dt.date | None, Query(alias="date", description="event date")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BookingPage:
    return await state.service.list_bookings(
        status=status_, event_date=day, page=page, page_size=page_size
    )


@router.get("/bookings/{booking_id}", responses=NOT_FOUND)
async def get_booking(booking_id: BookingId, state: State) -> BookingOut:
    return await state.service.get_booking(booking_id)


@router.post(
    "/bookings/{booking_id}/confirm",
    responses={**NOT_FOUND, **CONFLICT},
    summary="pending -> confirmed",
)
async def confirm_booking(booking_id: BookingId, state: State) -> BookingOut:
    async with state.db.write_session() as session, unit_of_work(session):
        return await state.service.confirm_booking(session, booking_id)


@router.post(
    "/bookings/{booking_id}/cancel",
    responses={**NOT_FOUND, **CONFLICT},
    summary="pending or confirmed -> cancelled (frees the chef)",
)
async def cancel_booking(booking_id: BookingId, state: State) -> BookingOut:
    async with state.db.write_session() as session, unit_of_work(session):
        return await state.service.cancel_booking(session, booking_id)
