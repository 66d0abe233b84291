"""Cache keys: binding, exclusions, format, versions, custom keys,
templates, and the escaping of every value placed in a key or a pattern."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import uuid
from decimal import Decimal

import pytest
from fc_helpers import Calls, Raw

import freshcache
from freshcache import Cache

KEY_HASH = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def keys_cache() -> Cache:
    """Keys are computed without any I/O: the memory backend is enough."""
    return Cache.from_url("memory://", namespace="myhibachi")


# -- binding ----------------------------------------------------------------------------------


async def test_positional_keyword_and_default_share_one_key(keys_cache: Cache) -> None:
    calls = Calls()

    @keys_cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(x: int = 1, *, scale: float = 1.0) -> float:
        calls(x)
        return x * scale

    assert stats.key_for(1) == stats.key_for(x=1) == stats.key_for() == stats.key_for(1, scale=1.0)
    assert await stats(1) == 1.0
    assert await stats(x=1) == 1.0
    assert await stats() == 1.0
    assert calls.count == 1
    assert stats.key_for(2) != stats.key_for(1)
    assert stats.key_for(1, scale=2.0) != stats.key_for(1)


def test_var_positional_and_var_keyword_are_in_the_key(keys_cache: Cache) -> None:
    @keys_cache.cached(ttl=60, key_prefix="p")
    def f(*args: str, **kwargs: int) -> int:
        return len(args) + len(kwargs)

    assert f.key_for("a b") != f.key_for("a", "b")
    assert f.key_for("a", x=1, y=2) == f.key_for("a", y=2, x=1)
    assert f.key_for("a", x=1) != f.key_for("a", x=2)
    assert f.key_for() != f.key_for("")


def test_two_strings_never_collide_with_one(keys_cache: Cache) -> None:
    @keys_cache.cached(ttl=60, key_prefix="p")
    def f(a: str, b: str = "") -> str:
        return a + b

    assert f.key_for("a b") != f.key_for("a", "b")
    assert f.key_for("ab", "") != f.key_for("a", "b")
    assert f.key_for("a,", "b") != f.key_for("a", ",b")


def test_self_and_cls_are_left_out(keys_cache: Cache) -> None:
    class Service:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        @keys_cache.cached(ttl=60, key_prefix="svc")
        def find(self, n: int) -> int:
            return n

        @classmethod
        @keys_cache.cached(ttl=60, key_prefix="svc")
        def make(cls, n: int) -> int:
            return n

    assert Service("a").find.key_for(1) == Service("b").find.key_for(1)
    assert Service.make.__func__.key_for(Service, 1) == Service.make.__func__.key_for(object, 1)
    assert "0x" not in Service("a").find.key_for(1)


def test_excluded_parameters_are_left_out(keys_cache: Cache) -> None:
    class Session:  # no canonical encoding: it would fail if it were in the key
        pass

    @keys_cache.cached(ttl=60, key_prefix="p", exclude=("session",))
    def f(day: str, session: Session) -> str:
        return day

    assert f.key_for("mon", Session()) == f.key_for("mon", Session())
    assert f.key_for("mon", Session()) != f.key_for("tue", Session())

    @keys_cache.cached(ttl=60, key_prefix="p", exclude="session")  # one name as a string
    def g(day: str, session: Session) -> str:
        return day

    assert g.key_for("mon", Session()) == g.key_for("mon", None)  # type: ignore[arg-type]


async def test_an_unsupported_argument_fails_at_the_call_naming_parameter_and_type(
    keys_cache: Cache,
) -> None:
    class Session:
        pass

    calls = Calls()

    @keys_cache.cached(ttl=60, key_prefix="p")  # decoration is fine
    async def f(day: str, session: Session) -> str:
        calls()
        return day

    with pytest.raises(TypeError) as info:
        await f("mon", Session())
    message = str(info.value)
    assert "'session'" in message
    assert "Session" in message
    assert "exclude=" in message
    assert not re.search(r"0x[0-9a-fA-F]+", message)  # no memory address, ever
    assert calls.count == 0


def test_a_bad_call_raises_pythons_own_error(keys_cache: Cache) -> None:
    @keys_cache.cached(ttl=60, key_prefix="p")
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        f.key_for()
    with pytest.raises(TypeError, match="unexpected keyword argument 'b'"):
        f.key_for(1, b=2)


# -- key format -------------------------------------------------------------------------------


async def get_dashboard_stats() -> dict[str, int]:
    return {"confirmed": 3}


def test_key_format_is_namespace_prefix_qualname_hash(keys_cache: Cache) -> None:
    wrapper = keys_cache.cached(ttl=300, key_prefix="booking:stats")(get_dashboard_stats)
    key = wrapper.key_for()
    namespace, booking, stats, name, digest = key.split(":")
    assert (namespace, booking, stats, name) == (
        "myhibachi",
        "booking",
        "stats",
        "get_dashboard_stats",
    )
    assert KEY_HASH.fullmatch(digest)


def test_the_function_segment_is_the_qualname(keys_cache: Cache) -> None:
    class Dashboard:
        @keys_cache.cached(ttl=60, key_prefix="booking:stats")
        def totals(self) -> int:
            return 1

    key = Dashboard().totals.key_for()
    qualname = Dashboard.totals.__qualname__
    assert qualname.endswith("Dashboard.totals")
    assert re.fullmatch(rf"myhibachi:booking:stats:{re.escape(qualname)}:[0-9a-f]{{16}}", key), key


def test_default_prefix_is_the_module(keys_cache: Cache) -> None:
    wrapper = keys_cache.cached(ttl=60)(get_dashboard_stats)
    assert wrapper.key_for().startswith(f"myhibachi:{__name__}:get_dashboard_stats:")


def test_version_adds_a_segment(keys_cache: Cache) -> None:
    v2 = keys_cache.cached(ttl=60, key_prefix="booking:stats", version=2)(get_dashboard_stats)
    plain = keys_cache.cached(ttl=60, key_prefix="booking:stats")(get_dashboard_stats)
    v2_key, plain_key = v2.key_for(), plain.key_for()
    assert v2_key != plain_key
    assert v2_key == plain_key.rsplit(":", 1)[0] + ":2:" + plain_key.rsplit(":", 1)[1]
    odd = keys_cache.cached(ttl=60, key_prefix="p", version="v:1*")(get_dashboard_stats)
    assert ":v%3A1%2A:" in odd.key_for()  # a version is one escaped segment


def test_custom_key_replaces_the_hash_and_is_escaped(keys_cache: Cache) -> None:
    @keys_cache.cached(ttl=60, key_prefix="user", key=lambda user_id, **_: f"u-{user_id}")
    def profile(user_id: str, verbose: bool = False) -> str:
        return user_id

    assert profile.key_for("42") == "myhibachi:user:" + profile.__qualname__ + ":u-42"
    assert profile.key_for("42", verbose=True) == profile.key_for("42")  # key= decides
    assert profile.key_for("4:2*").endswith(":u-4%3A2%2A")


async def test_stored_key_is_the_documented_key(cache: Cache, raw: Raw) -> None:
    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def get_dashboard_stats() -> dict[str, int]:
        return {"confirmed": 3}

    await get_dashboard_stats()
    key = get_dashboard_stats.key_for()
    assert await raw.get(key) is not None
    stored = [k for k in await raw.keys("*") if not k.startswith(f"{cache.namespace}:__")]
    assert stored == [key]
    qualname = re.escape(get_dashboard_stats.__qualname__)
    assert re.fullmatch(rf"{cache.namespace}:booking:stats:{qualname}:[0-9a-f]{{16}}", key)


# -- templates in key prefixes ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Booking:
    id: int
    day: dt.date


def test_templates_are_filled_from_arguments(keys_cache: Cache) -> None:
    @keys_cache.cached(ttl=60, key_prefix="booking:availability:{event_date}")
    def get_available_slots(event_date: dt.date, guests: int = 2) -> list[str]:
        return []

    @keys_cache.cached(ttl=60, key_prefix="booking:{booking.day}:detail")
    def detail(booking: Booking) -> int:
        return booking.id

    key = get_available_slots.key_for(dt.date(2025, 10, 11))
    assert key.startswith("myhibachi:booking:availability:2025-10-11:")
    assert detail.key_for(Booking(7, dt.date(2025, 10, 12))).startswith(
        "myhibachi:booking:2025-10-12:detail:"
    )


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("*", "%2A"),
        ("a:b", "a%3Ab"),
        ("2025-10-1?", "2025-10-1%3F"),
        ("[12]", "%5B12%5D"),
        ("back\\slash", "back%5Cslash"),
        ("100%", "100%25"),
        ("tab\there", "tab%09here"),
        (True, "true"),
        (12, "12"),
        (Decimal("1.50"), "1.5"),
        (
            dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2025-01-01T10%3A00%3A00+00%3A00",
        ),
    ],
)
def test_template_values_are_escaped_into_one_segment(
    keys_cache: Cache, value: object, segment: str
) -> None:
    @keys_cache.cached(ttl=60, key_prefix="booking:availability:{day}")
    def slots(day: object) -> int:
        return 0

    key = slots.key_for(value)
    assert key.split(":")[3] == segment
    assert len(key.split(":")) == 6  # no value adds a segment


def test_a_template_over_an_unsupported_value_fails_at_the_call(keys_cache: Cache) -> None:
    @keys_cache.cached(ttl=60, key_prefix="booking:{days}")
    def f(days: list[str]) -> int:
        return 0

    with pytest.raises(TypeError, match="cannot be placed in a key or pattern"):
        f.key_for(["mon"])


def test_a_template_over_an_unknown_parameter_fails_at_decoration() -> None:
    cache = Cache.from_url("memory://", namespace="myhibachi")
    with pytest.raises(ValueError, match=r"refers to \{event_day\}.*\['event_date'\]"):

        @cache.cached(ttl=60, key_prefix="booking:availability:{event_day}")
        def f(event_date: dt.date) -> int:
            return 0

    with pytest.raises(ValueError, match=r"refers to \{nope\}"):

        @cache.invalidate_cache("booking:{nope}:*")
        def g(event_date: dt.date) -> int:
            return 0


# -- escape() and pattern() -------------------------------------------------------------------


def test_escape_neutralises_every_special_character() -> None:
    assert freshcache.escape("a:b*c?d[e]f\\g%h") == "a%3Ab%2Ac%3Fd%5Be%5Df%5Cg%25h"
    assert freshcache.escape("plain-value_1.2") == "plain-value_1.2"
    assert freshcache.escape("\n\x7f") == "%0A%7F"
    assert freshcache.escape(dt.date(2025, 10, 11)) == "2025-10-11"
    assert freshcache.escape(7) == "7"
    assert freshcache.escape(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"

    class Color(enum.Enum):
        RED = "r:ed"

    assert freshcache.escape(Color.RED) == "r%3Aed"
    with pytest.raises(TypeError, match="cannot be placed in a key or pattern"):
        freshcache.escape(["a"])


def test_pattern_escapes_each_segment_and_keeps_a_final_wildcard() -> None:
    day = dt.date(2025, 10, 11)
    assert freshcache.pattern("booking", "availability", day, "*") == (
        "booking:availability:2025-10-11:*"
    )
    assert freshcache.pattern("booking", "*", "x") == "booking:%2A:x"
    assert freshcache.pattern("booking", "a:b", "*") == "booking:a%3Ab:*"
    assert freshcache.pattern("booking", "2025-*") == "booking:2025-%2A"  # not a wildcard
    assert freshcache.pattern("booking") == "booking"
    with pytest.raises(ValueError, match="at least one segment"):
        freshcache.pattern()


def test_an_escaped_value_can_neither_add_a_segment_nor_widen_a_pattern() -> None:
    from freshcache.tokens import PatternKind, classify

    for hostile in ["*", "2025-10-11:*", "?", "[0-9]", "\\*", "a:b:c"]:
        built = freshcache.pattern("booking", "availability", hostile, "*")
        plan = classify(built)
        assert plan.kind is PatternKind.GENERATION, built
        assert plan.segments == ("booking", "availability", freshcache.escape(hostile))


def test_escape_is_injective_for_the_empty_string() -> None:
    assert freshcache.escape("") != freshcache.escape("\x00")
