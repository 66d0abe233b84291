"""Pydantic models of the HTTP API and of the cached reads (a cache hit decodes to these)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

from myhibachi.models import BookingStatus

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PHONE = re.compile(r"^\+?[0-9 ().-]{7,25}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Text = Annotated[str, StringConstraints(strip_whitespace=True)]


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


class BookingCreate(BaseModel):
    """A booking request. Date window and slot are checked against the settings by the service.

    Types are strict where JSON has the type: ``guests`` is a JSON integer (not ``true``, not
    ``"12"``, not ``12.0``), ``event_date`` a ``YYYY-MM-DD`` string (not a Unix timestamp).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_name": "Ada Lovelace",
                    "email": "ada@example.com",
                    "phone": "+1 415 555 0100",
                    "event_date": "2030-06-01",
                    "time_slot": "18:00",
                    "guests": 12,
                    "address": "1 Analytical Way, San Francisco, CA",
                }
            ]
        },
    )

    customer_name: Annotated[Text, Field(min_length=1, max_length=120)]
    email: EmailStr = Field(max_length=254)
    phone: Annotated[Text, Field(min_length=7, max_length=32)]
    event_date: dt.date
    time_slot: Annotated[Text, Field(min_length=1, max_length=5)]
    guests: StrictInt = Field(ge=1, le=100)
    address: Annotated[Text, Field(min_length=5, max_length=300)]

    @field_validator("event_date", mode="before")
    @classmethod
    def _date_is_a_string(cls, value: object) -> object:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value  # a Python caller's date
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            raise ValueError("must be a date as a YYYY-MM-DD string")
        return value

    @field_validator("customer_name", "address")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        return _printable(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        digits = sum(ch.isdigit() for ch in value)
        if not _PHONE.match(value) or not 7 <= digits <= 15:
            raise ValueError("must be a phone number: 7 to 15 digits, optionally +, spaces, ()-.")
        return value


class BookingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_name: str
    email: str
    phone: str
    event_date: dt.date
    time_slot: str
    guests: int
    address: str
    status: BookingStatus
    price: Decimal = Field(description="total price in dollars")
    chef_seat: int = Field(description="which of the slot's chefs takes this event (1..chefs)")
    created_at: dt.datetime
    updated_at: dt.datetime


class BookingPage(BaseModel):
    items: list[BookingOut]
    total: int
    page: int
    page_size: int


class SlotAvailability(BaseModel):
    time_slot: str
    capacity: int = Field(description="chefs in this slot")
    pending: int
    confirmed: int
    remaining: int


class DayAvailability(BaseModel):
    """Remaining capacity per slot of one day: the value cached per date."""

    date: dt.date
    slots: list[SlotAvailability]
    capacity: int
    remaining: int


class AvailabilityRange(BaseModel):
    start: dt.date
    end: dt.date
    days: list[DayAvailability]


class StatusCounts(BaseModel):
    pending: int = 0
    confirmed: int = 0
    cancelled: int = 0


class DayCount(BaseModel):
    date: dt.date
    bookings: int
    guests: int


class DashboardStats(BaseModel):
    """Dashboard aggregates, all computed in SQL. Guests and events count active bookings
    (pending or confirmed); revenue counts confirmed bookings only."""

    as_of: dt.date
    total_bookings: int
    by_status: StatusCounts
    total_guests: int
    average_guests: float
    confirmed_revenue: Decimal
    events_next_7_days: int
    events_next_30_days: int
    bookings_per_day: list[DayCount] = Field(description="active bookings for the next 30 days")
