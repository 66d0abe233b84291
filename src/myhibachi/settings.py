"""Service settings: environment variables (``MYHIBACHI_*``, plus ``DATABASE_URL`` and
``FRESHCACHE_URL``/``FRESHCACHE_NAMESPACE``) over defaults that run with no server at all."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/myhibachi.sqlite3"
_SLOT = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Settings(BaseSettings):
    """Everything the service needs, with defaults for a laptop (SQLite file + in-process cache).

    Capacity model: every time slot of a day has ``chefs_per_slot`` chefs, and one booking
    takes one chef for its slot, whatever its party size (guests only change the price).
    So a slot's capacity is its chefs, and its remaining capacity is chefs minus the
    bookings that are pending or confirmed; a cancelled booking frees its chef.
    """

    model_config = SettingsConfigDict(env_prefix="MYHIBACHI_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "MYHIBACHI_DATABASE_URL", "database_url"),
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    cache_url: str = Field(
        default="memory://",
        validation_alias=AliasChoices("FRESHCACHE_URL", "MYHIBACHI_CACHE_URL", "cache_url"),
    )
    cache_namespace: str = Field(
        default="myhibachi",
        validation_alias=AliasChoices(
            "FRESHCACHE_NAMESPACE", "MYHIBACHI_CACHE_NAMESPACE", "cache_namespace"
        ),
    )
    cache_timeout: float = Field(default=0.05, gt=0, le=5, description="seconds per cache call")
    near_lease: float | None = Field(
        default=None,
        ge=0,
        le=5,
        validation_alias=AliasChoices("MYHIBACHI_NEAR_LEASE", "near_lease"),
        description=(
            "seconds a Redis-validated entry is served in-process (the near cache; writes wait "
            "that long); unset: 0.05 with Redis, off with memory://; 0 turns it off"
        ),
    )
    invalidation: Literal["granular", "broad"] = Field(
        default="granular",
        description=(
            "granular: a write invalidates booking:stats:* and its own day of availability "
            "(the audit's recommendation); broad: booking:* (the audited original), to compare."
        ),
    )

    # From the environment as "12:00,15:00,18:00" (NoDecode: not JSON).
    time_slots: Annotated[tuple[str, ...], NoDecode] = ("12:00", "15:00", "18:00", "21:00")
    chefs_per_slot: int = Field(default=3, ge=1, le=100)

    price_per_guest: Decimal = Field(default=Decimal("60.00"), ge=0)
    minimum_price: Decimal = Field(default=Decimal("550.00"), ge=0)
    weekend_surcharge_percent: Decimal = Field(default=Decimal("10"), ge=0, le=100)

    max_advance_days: int = Field(default=365, ge=1, le=3650)
    max_range_days: int = Field(default=62, ge=1, le=366)
    calendar_days: int = Field(default=28, ge=7, le=62)

    # Limits at the HTTP edge. A booking is well under 2 KiB of JSON, so 64 KiB leaves room
    # for heavy \u-escaping while a hostile body never reaches the JSON parser.
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="largest request body accepted, in bytes (larger: 413 before it is read)",
    )
    max_error_entries: int = Field(
        default=20, ge=1, le=1000, description="validation errors listed in one 422 response"
    )

    auto_migrate: bool = True
    demo: bool = False
    demo_bookings: int = Field(default=400, ge=0)

    @field_validator("time_slots", mode="before")
    @classmethod
    def _split_slots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("time_slots")
    @classmethod
    def _check_slots(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one time slot is needed")
        for slot in value:
            if not _SLOT.match(slot):
                raise ValueError(f"time slot {slot!r} is not HH:MM")
        if len(set(value)) != len(value):
            raise ValueError("time slots must be distinct")
        return tuple(sorted(value))

    @property
    def cache_near_lease(self) -> float:
        """The near cache's lease for freshcache: on (0.05 s) by default with Redis."""
        if self.cache_url.startswith("memory://"):
            return 0.0  # already in-process
        return 0.05 if self.near_lease is None else self.near_lease

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def price_for(self, guests: int, event_date: dt.date) -> Decimal:
        """Price of a party: per guest with a minimum, plus a surcharge on Fri/Sat/Sun."""
        price = max(self.price_per_guest * guests, self.minimum_price)
        if event_date.weekday() >= 4:
            price += price * self.weekend_surcharge_percent / 100
        return price.quantize(Decimal("0.01"))


class SettingsError(ValueError):
    """Settings that cannot run the service: one line per bad value, naming its variable."""


def _variable(field: str) -> str:
    """The environment variable a user sets for ``field``."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"MYHIBACHI_{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and ``overrides``, checked before anything starts.

    Raises SettingsError listing every bad value by its environment variable, with the rule
    it breaks (values are cut short: a setting is no place for megabytes)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "settings"
            lines.append(f"{_variable(field)}: {error['msg'][:200]}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
