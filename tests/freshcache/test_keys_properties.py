"""Property tests of the key encoder: equal bound arguments give equal keys; different ones give
different keys.

"Equal" here is the encoder's documented notion, stricter than ``==``: values are compared by
type AND value, so ``1``, ``1.0`` and ``True`` (equal in Python) are different arguments and get
different keys (a cache keyed by ``==`` would hand ``f(True)`` the entry of ``f(1)``). Where
``==`` is blind to a difference that does not change the meaning, the key is blind too: dict
and set order, the zone of an aware datetime (the same instant), the exponent of a Decimal
(``Decimal('1.0') == Decimal('1.00')``), ``-0.0`` vs ``0.0``, ``set`` vs ``frozenset`` and
``bytes`` vs ``bytearray`` (which compare equal). ``reference`` below is that notion, written
independently of the encoder.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, assume, given, settings

import freshcache
from freshcache import Cache
from freshcache.keys import ArgumentBinder, args_hash, encode_value

# Deterministic (the same examples every run, no example database on disk) and quick.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Colour(enum.Enum):
    RED = 1
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


ZONES = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
# The whole range, near datetime.min/max too (where the UTC datetime of an instant may not exist).
DATETIMES = st.datetimes(timezones=ZONES) | st.datetimes()

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.dates(),
    st.times(),
    DATETIMES,
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.sampled_from([Colour.RED, Colour.GREEN, Size.SMALL, Size.LARGE]),
)
HASHABLE = st.recursive(
    SCALARS,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=4,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(HASHABLE, inner, max_size=3),
        st.frozensets(HASHABLE, max_size=3),
        st.sets(HASHABLE, max_size=3),
    ),
    max_leaves=8,
)


def reference(value: Any) -> Any:
    """A hashable description of a value: equal exactly when the key must be equal."""
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, reference(value.value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", 0.0 if value == 0.0 else value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes | bytearray):
        return ("bytes", bytes(value))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return ("naive datetime", value.replace(fold=0))
        offset = value.utcoffset()
        assert offset is not None
        return ("instant", value.replace(tzinfo=None) - dt.datetime.min - offset)
    if isinstance(value, dt.date):
        return ("date", value)
    if isinstance(value, dt.time):
        return ("time", value.isoformat())
    if isinstance(value, Decimal):
        return ("decimal", value.normalize())
    if isinstance(value, uuid.UUID):
        return ("uuid", value)
    if value is None:
        return ("none",)
    if isinstance(value, list):
        return ("list", tuple(reference(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(reference(v) for v in value))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(reference(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((reference(k), reference(v)) for k, v in value.items()))
    raise TypeError(type(value))


def key_of(*values: Any) -> str:
    """The hash segment of ``f(*values)`` for a function of as many parameters."""
    out: list[str] = []
    for value in values:
        encode_value(value, out)
        out.append(",")
    return args_hash("".join(out))


# -- the encoder ------------------------------------------------------------------------------


@PROPERTY
@given(VALUES, VALUES)
def test_keys_are_equal_exactly_when_arguments_are(a: Any, b: Any) -> None:
    assert (key_of(a) == key_of(b)) == (reference(a) == reference(b))


@PROPERTY
@given(VALUES)
def test_a_value_and_its_rebuilt_copy_share_a_key(value: Any) -> None:
    def rebuild(v: Any) -> Any:
        # Same meaning, different construction: reversed dict/set insertion order, another
        # zone for aware datetimes, another exponent for Decimals.
        if isinstance(v, dict):
            return {rebuild(k): rebuild(x) for k, x in reversed(list(v.items()))}
        if isinstance(v, list):
            return [rebuild(x) for x in v]
        if isinstance(v, tuple):
            return tuple(rebuild(x) for x in v)
        if isinstance(v, frozenset):
            return frozenset(rebuild(x) for x in reversed(list(v)))
        if isinstance(v, set):
            return {rebuild(x) for x in reversed(list(v))}
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            try:
                return v.astimezone(dt.timezone(dt.timedelta(hours=-7)))
            except OverflowError:  # the instant has no time in that zone
                return v
        if isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value():
            return v.quantize(Decimal("1.00")) if abs(v) < 10**20 else v
        return v

    copy = rebuild(value)
    assert key_of(copy) == key_of(value)


@PROPERTY
@given(st.lists(VALUES, min_size=1, max_size=3), st.lists(VALUES, min_size=1, max_size=3))
def test_argument_lists_are_self_delimiting(a: list[Any], b: list[Any]) -> None:
    # Keys of whole calls: f(*a) vs f(*b) with as many parameters as values.
    assume([reference(x) for x in a] != [reference(x) for x in b])
    assert key_of(*a) != key_of(*b)


@PROPERTY
@given(st.text(max_size=6), st.text(max_size=6), st.text(max_size=6))
def test_splitting_a_string_differently_changes_the_key(a: str, b: str, c: str) -> None:
    assume((a, b + c) != (a + b, c))
    assert key_of(a, b + c) != key_of(a + b, c)
    assert key_of(a + " " + b) != key_of(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"x": 1, "y": 2}, {"y": 2, "x": 1}),
        ({3, 1, 2}, {2, 3, 1}),
        (frozenset({"a", "b"}), {"b", "a"}),
        (
            dt.datetime(2025, 10, 11, 12, tzinfo=dt.UTC),
            dt.datetime(2025, 10, 11, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        ),
        (Decimal("1.0"), Decimal("1.00")),
        (Decimal("100"), Decimal("1E+2")),
        (0.0, -0.0),
        (b"ab", bytearray(b"ab")),
        ([{"k": {1, 2}}], [{"k": {2, 1}}]),
    ],
)
def test_equal_arguments_share_a_key(a: Any, b: Any) -> None:
    assert key_of(a) == key_of(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),  # equal in Python, different types: documented as different keys
        (1, True),
        (0, False),
        (1.0, True),
        ("1", 1),
        (None, "None"),
        (Size.SMALL, 1),  # an IntEnum member is not its value
        (Colour.GREEN, "green"),
        ([1, 2], (1, 2)),
        ({"a": 1}, [("a", 1)]),
        (dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),  # naive != aware
        (dt.date(2025, 1, 1), dt.datetime(2025, 1, 1)),
        (b"a", "a"),
        ("", None),
        ([], ()),
        ([[]], [[], []]),
    ],
)
def test_different_arguments_get_different_keys(a: Any, b: Any) -> None:
    assert key_of(a) != key_of(b)


# -- through the binder and the public key_for --------------------------------------------------


@PROPERTY
@given(st.integers(), st.text(max_size=5), st.booleans())
def test_binding_positional_keyword_and_defaults_share_a_key(
    x: int, label: str, use_default: bool
) -> None:
    def f(x: int, label: str = "", *, flag: bool = False) -> None:
        return None

    binder = ArgumentBinder(f)

    def key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return args_hash(binder.key_part(binder.bind(args, kwargs)))

    explicit = key((x, label), {"flag": False})
    assert key((x,), {"label": label}) == explicit
    assert key((), {"label": label, "x": x}) == explicit
    if use_default:
        assert key((x,), {}) == key((x, ""), {"flag": False})
    assert key((x, label), {"flag": True}) != explicit


@PROPERTY
@given(
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=4),
    st.lists(st.integers(), max_size=4),
)
def test_key_for_is_order_blind_for_dicts_and_sets(d: dict[str, int], items: list[int]) -> None:
    cache = Cache.from_url("memory://", namespace="prop")

    @cache.cached(ttl=60, key_prefix="p")
    def f(mapping: dict[str, int], members: set[int]) -> int:
        return 0

    reordered = dict(reversed(list(d.items())))
    members: set[int] = set()
    for item in reversed(items):  # another insertion order (and so, often, another layout)
        members.add(item)
    assert f.key_for(d, set(items)) == f.key_for(reordered, members)


# -- escape -----------------------------------------------------------------------------------


@PROPERTY
@given(st.text(min_size=1))
def test_escape_gives_one_literal_segment_and_is_reversible(text: str) -> None:
    escaped = freshcache.escape(text)
    assert not set(escaped) & set(":*?[]\\")
    assert all(0x20 <= ord(ch) != 0x7F for ch in escaped)
    from urllib.parse import unquote

    assert unquote(escaped) == text  # percent-encoding: so distinct values stay distinct


@PROPERTY
@given(st.text(min_size=1), st.text(min_size=1))
def test_escape_is_injective(a: str, b: str) -> None:
    assume(a != b)  # the empty string: see test_keys.py (reported bug)
    assert freshcache.escape(a) != freshcache.escape(b)


# -- edge cases -------------------------------------------------------------------------------


def test_extreme_aware_datetimes_get_keys() -> None:
    plus5 = dt.timezone(dt.timedelta(hours=5))
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    early = dt.datetime(1, 1, 1, tzinfo=plus5)  # before datetime.min in UTC
    late = dt.datetime(9999, 12, 31, 23, tzinfo=minus5)  # after datetime.max in UTC
    assert key_of(early) != key_of(late)
    assert key_of(early) == key_of(
        dt.datetime(1, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=6)))
    )
    assert key_of(early) != key_of(dt.datetime(1, 1, 1, tzinfo=dt.UTC))
    assert freshcache.escape(early) != freshcache.escape(late)


def test_negative_zero_decimal_shares_the_key_of_zero() -> None:
    assert key_of(Decimal("-0")) == key_of(Decimal("0")) == key_of(Decimal("0E+3"))
    assert freshcache.escape(Decimal("-0.00")) == freshcache.escape(Decimal("0"))
