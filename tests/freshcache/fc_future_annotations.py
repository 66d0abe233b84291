"""Decorated functions in a module with ``from __future__ import annotations``: every annotation
is a string, resolved by ``typing.get_type_hints`` through the wrapper (and by the codec, which
must decode a hit to the annotated type)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import freshcache


@dataclasses.dataclass(frozen=True)
class Slot:
    day: dt.date
    price: Decimal


async def available_slots(day: dt.date, guests: int = 2) -> list[Slot]:
    """Slots of one day."""
    return [Slot(day, Decimal("49.90") * guests)]


def price_of(slot: Slot, *, discount: Decimal | None = None) -> Decimal:
    """Price of a slot."""
    return slot.price - (discount or Decimal(0))


cached_available_slots = freshcache.cached(ttl=60, key_prefix="future:slots")(available_slots)
cached_price_of = freshcache.cached(ttl=60, key_prefix="future:price")(price_of)
