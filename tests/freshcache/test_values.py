"""Values: a hit returns the same type and an equal value; None is
a value; what cannot be encoded is returned uncached and counted; what cannot be decoded is a
miss, counted, and replaced; oversize values are not stored; pickle only when signed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pickle
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from fc_helpers import Calls, Raw

from freshcache import Cache
from freshcache.entry import HEADER_END


class Status(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


class Slot(enum.IntEnum):
    LUNCH = 1
    DINNER = 2


class Colour(enum.Enum):
    RED = "red"


class Booking(pydantic.BaseModel):
    id: int
    event_date: dt.date
    status: Status
    price: Decimal
    created_at: dt.datetime
    ref: uuid.UUID


@dataclasses.dataclass(frozen=True)
class Availability:
    day: dt.date
    starts: dt.time
    seats: int
    slot: Slot


@dataclasses.dataclass
class Report:
    bookings: list[Booking]
    by_day: dict[str, list[Availability]]
    total: Decimal


PARIS = dt.timezone(dt.timedelta(hours=2))
BOOKING = Booking(
    id=7,
    event_date=dt.date(2025, 10, 11),
    status=Status.CONFIRMED,
    price=Decimal("1249.50"),
    created_at=dt.datetime(2025, 6, 1, 9, 30, 15, 123456, tzinfo=PARIS),
    ref=uuid.UUID("12345678-1234-5678-1234-567812345678"),
)
AVAILABILITY = Availability(dt.date(2025, 10, 11), dt.time(18, 30), 4, Slot.DINNER)

# (annotation, value) pairs: every supported type, alone and in containers, nested.
ROUND_TRIPS: dict[str, tuple[Any, Any]] = {
    "pydantic": (Booking, BOOKING),
    "dataclass": (Availability, AVAILABILITY),
    "naive datetime": (dt.datetime, dt.datetime(2025, 10, 11, 18, 30, 0, 5)),
    "aware datetime": (dt.datetime, dt.datetime(2025, 10, 11, 18, 30, tzinfo=PARIS)),
    "date": (dt.date, dt.date(2025, 10, 11)),
    "time": (dt.time, dt.time(18, 30, 5, 250)),
    "decimal": (Decimal, Decimal("19.90")),
    "uuid": (uuid.UUID, uuid.UUID(int=2**100)),
    "str enum": (Status, Status.PENDING),
    "int enum": (Slot, Slot.LUNCH),
    "plain enum": (Colour, Colour.RED),
    "int": (int, 3),
    "float": (float, 2.5),
    "bool": (bool, False),
    "str": (str, "héllo:*"),
    "list of models": (list[Booking], [BOOKING, BOOKING.model_copy(update={"id": 8})]),
    "dict of decimals": (dict[str, Decimal], {"a": Decimal("1.10"), "b": Decimal("-0.5")}),
    "tuple": (tuple[int, str, dt.date], (1, "x", dt.date(2025, 1, 1))),
    "set": (set[int], {1, 2, 3}),
    "optional": (int | None, 5),
    "nested dataclass": (
        Report,
        Report([BOOKING], {"2025-10-11": [AVAILABILITY]}, Decimal("1249.50")),
    ),
    "nested containers": (
        dict[str, list[tuple[dt.date, Decimal]]],
        {"week": [(dt.date(2025, 10, 11), Decimal("3.00"))], "empty": []},
    ),
    "untyped json": (dict, {"a": [1, 2.5, "x", None, True]}),
}


def same_types(a: Any, b: Any) -> bool:
    """Equal types all the way down (a hit must not turn a Decimal into a str, ...)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return all(same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return all(same_types(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(
            same_types(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, pydantic.BaseModel):
        return all(same_types(getattr(a, n), getattr(b, n)) for n in type(a).model_fields)
    return True


def producing(cache: Cache, annotation: Any, value: Any, calls: Calls, **options: Any) -> Any:
    async def produce(n: int):  # type: ignore[no-untyped-def]
        calls(n)
        return value

    if annotation is not None:
        produce.__annotations__["return"] = annotation
    options.setdefault("key_prefix", "values")
    return cache.cached(ttl=60, **options)(produce)


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
async def test_a_hit_returns_the_same_type_and_an_equal_value(cache: Cache, case: str) -> None:
    annotation, value = ROUND_TRIPS[case]
    calls = Calls()
    produce = producing(cache, annotation, value, calls)
    miss = await produce(1)
    hit = await produce(1)
    assert calls.count == 1, "the value was not cached"
    assert miss is value
    assert hit == value
    assert same_types(hit, value)
    if isinstance(value, dt.datetime):
        assert hit.utcoffset() == value.utcoffset()  # naive stays naive, the offset is kept
    stats = cache.stats()["values"]
    assert (stats.hits, stats.misses, stats.sets, stats.errors) == (1, 1, 1, 0)


async def test_a_cached_none_is_a_hit_not_a_miss(cache: Cache) -> None:
    for annotation in (int | None, None):
        calls = Calls()
        produce = producing(cache, annotation, None, calls, key_prefix=f"none:{bool(annotation)}")
        assert await produce(1) is None
        assert await produce(1) is None
        assert await produce(1) is None
        assert calls.count == 1
        stats = cache.stats()[f"none:{bool(annotation)}"]
        assert (stats.hits, stats.misses, stats.sets) == (2, 1, 1)


class Widget:
    """No JSON encoding and no equality: cannot be cached as JSON."""

    def __init__(self, n: int) -> None:
        self.n = n


@pytest.mark.parametrize(
    ("annotation", "make_value"),
    [
        (None, lambda: Widget(1)),  # an arbitrary object
        (None, lambda: dt.datetime(2025, 10, 11)),  # would come back a str
        (None, lambda: Decimal("1.5")),  # would come back a float, or fail
        (None, lambda: (1, 2)),  # would come back a list
        (Any, lambda: Colour.RED),  # would come back a str
        (float, lambda: float("nan")),  # never equal to itself
        (dict[str, int], lambda: {"a": Widget(2)}),  # does not match its annotation
    ],
    ids=[
        "object",
        "untyped datetime",
        "untyped decimal",
        "untyped tuple",
        "enum as Any",
        "nan",
        "wrong type",
    ],
)
async def test_a_value_that_cannot_be_encoded_is_returned_uncached_and_counted(
    cache: Cache, raw: Raw, annotation: Any, make_value: Callable[[], Any]
) -> None:
    value = make_value()
    calls = Calls()
    produce = producing(cache, annotation, value, calls)
    assert await produce(1) is value  # the caller gets exactly what the function returned
    assert await produce(1) is value
    assert calls.count == 2
    assert await raw.get(produce.key_for(1)) is None
    stats = cache.stats()["values"]
    assert stats.errors_by_kind == {"encode": 2}
    assert stats.sets == 0


async def test_an_unencodable_return_annotation_never_raises_at_the_caller(cache: Cache) -> None:
    calls = Calls()
    produce = producing(cache, Widget, Widget(3), calls)
    assert (await produce(1)).n == 3
    assert cache.stats()["values"].errors_by_kind == {"encode": 1}


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (None, Status.PENDING),
        (None, Slot.DINNER),
        (None, {"k": Status.CONFIRMED}),
        (Any, Status.PENDING),
    ],
    ids=["StrEnum", "IntEnum", "StrEnum in a dict", "StrEnum as Any"],
)
async def test_an_untyped_hit_never_changes_the_type(annotation: Any, value: Any) -> None:
    cache = Cache.from_url("memory://", namespace="untyped")  # a codec matter: any backend
    calls = Calls()
    produce = producing(cache, annotation, value, calls)
    await produce(1)
    assert same_types(await produce(1), value)


async def _stored(raw: Raw, key: str) -> tuple[bytes, bytes]:
    """(header including its end mark, payload) of the entry at ``key``."""
    stored = await raw.get(key)
    assert stored is not None
    header, payload = stored.split(HEADER_END, 1)
    return header + HEADER_END, payload


async def test_an_undecodable_entry_is_a_counted_miss_and_is_replaced(
    cache: Cache, raw: Raw
) -> None:
    calls = Calls()
    produce = producing(cache, dict[str, Decimal], {"a": Decimal("1")}, calls)
    await produce(1)
    key = produce.key_for(1)
    header, _ = await _stored(raw, key)
    await raw.set(key, header + b"\xff not json {")  # valid stamp, garbage payload

    assert await produce(1) == {"a": Decimal("1")}
    assert calls.count == 2
    stats = cache.stats()["values"]
    assert stats.errors_by_kind == {"decode": 1}
    assert (stats.misses, stats.hits, stats.sets) == (2, 0, 2)
    # Replaced: the next read is a hit, and the stored payload is JSON again.
    assert await produce(1) == {"a": Decimal("1")}
    assert calls.count == 2
    assert (await _stored(raw, key))[1] == b'{"a":"1"}'


@pytest.mark.parametrize(
    "garbage", [b"garbage", b"\x00\x01\x02", b"~", b"a\x1e", b"\x1f\x1f\x1f\x1e{}"]
)
async def test_garbage_at_the_key_is_a_miss_and_is_replaced(
    cache: Cache, raw: Raw, garbage: bytes
) -> None:
    calls = Calls()
    produce = producing(cache, int, 5, calls)
    key = produce.key_for(1)
    await produce(1)
    await raw.set(key, garbage)
    assert await produce(1) == 5
    assert await produce(1) == 5
    assert calls.count == 2
    stats = cache.stats()["values"]
    assert stats.hits == 1
    assert stats.sets == 2
    assert await raw.get(key) not in (None, garbage)


async def test_an_empty_value_at_the_key_is_replaced(cache: Cache, raw: Raw) -> None:
    calls = Calls()
    produce = producing(cache, int, 5, calls)
    await raw.set(produce.key_for(1), b"")
    assert await produce(1) == 5
    assert await produce(1) == 5
    assert calls.count == 1


async def test_values_over_max_value_bytes_are_not_stored_and_are_counted(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache(max_value_bytes=100)
    raw = Raw(cache)
    calls = Calls()
    small = producing(cache, str, "x" * 50, calls, key_prefix="small")
    big = producing(cache, str, "x" * 200, calls, key_prefix="big")
    for _ in range(2):
        await small(1)
        await big(1)
    assert calls.count == 3
    assert cache.stats()["big"].errors_by_kind == {"oversize": 2}
    assert cache.stats()["big"].sets == 0
    assert cache.stats()["small"].hits == 1
    assert await raw.get(big.key_for(1)) is None
    await raw.aclose()


# -- pickle -----------------------------------------------------------------------------------

SIGNING_KEY = b"0123456789abcdef-signing"
UNPICKLED: list[str] = []


class Spy:
    """Records every unpickling, so a test can prove that tampered bytes never were."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __setstate__(self, state: dict[str, Any]) -> None:
        UNPICKLED.append(state["tag"])
        self.__dict__.update(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spy) and other.tag == self.tag

    __hash__ = None  # type: ignore[assignment]


def test_pickle_without_a_signing_key_is_refused_at_decoration() -> None:
    cache = Cache.from_url("memory://", namespace="pickle")
    with pytest.raises(ValueError, match="requires signing_key"):
        producing(cache, None, Spy("x"), Calls(), serializer="pickle")


async def test_signed_pickle_round_trips_arbitrary_objects(cache: Cache) -> None:
    calls = Calls()
    value = {"spy": Spy("a"), "when": dt.datetime(2025, 1, 1), "set": frozenset({1})}
    produce = producing(cache, None, value, calls, serializer="pickle", signing_key=SIGNING_KEY)
    UNPICKLED.clear()
    await produce(1)
    hit = await produce(1)
    assert hit == value
    assert hit is not value
    assert type(hit["spy"]) is Spy
    assert calls.count == 1
    assert "a" in UNPICKLED  # really decoded from the stored bytes


@pytest.mark.parametrize("where", ["signature", "body"])
async def test_a_tampered_pickle_entry_is_a_miss_and_never_unpickled(
    cache: Cache, raw: Raw, where: str
) -> None:
    calls = Calls()
    produce = producing(
        cache, None, Spy("genuine"), calls, serializer="pickle", signing_key=SIGNING_KEY
    )
    await produce(1)
    key = produce.key_for(1)
    header, payload = await _stored(raw, key)
    signature = payload[:32]
    if where == "signature":
        forged = bytes([signature[0] ^ 1]) + signature[1:] + payload[32:]
    else:  # a valid pickle of an attacker's choice behind the old signature
        forged = signature + pickle.dumps(Spy("attacker"))
    await raw.set(key, header + forged)
    UNPICKLED.clear()

    assert await produce(1) == Spy("genuine")
    assert calls.count == 2
    assert "attacker" not in UNPICKLED
    assert UNPICKLED.count("genuine") <= 1  # only the codec's own check of the new value
    assert cache.stats()["values"].errors_by_kind == {"decode": 1}


async def test_an_entry_signed_with_another_key_is_a_miss(cache: Cache) -> None:
    calls = Calls()

    def make(signing_key: bytes) -> Any:
        async def value(n: int):  # type: ignore[no-untyped-def]
            calls(signing_key)
            return Spy(signing_key.decode())

        return cache.cached(
            ttl=60, key_prefix="values", serializer="pickle", signing_key=signing_key
        )(value)

    old, new = make(b"old-key-0123456789"), make(b"new-key-0123456789")
    assert old.key_for(1) == new.key_for(1)  # same function, same key: only the key rotated
    assert await old(1) == Spy("old-key-0123456789")
    UNPICKLED.clear()
    assert await new(1) == Spy("new-key-0123456789")
    assert "old-key-0123456789" not in UNPICKLED
    assert calls.count == 2
    assert cache.stats()["values"].errors_by_kind == {"decode": 1}
    assert await new(1) == Spy("new-key-0123456789")
    assert calls.count == 2
