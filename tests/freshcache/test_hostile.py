"""Hostile arguments and values: what a caller (or a user typing into a form) can hand a cached
function must end as a documented ``TypeError`` naming the parameter, or as a value that keys
and caches fine; never a ``RecursionError``, a ``ValueError`` from the int digit limit or a
``UnicodeEncodeError`` from inside a backend. Values that would come back with other types are
not cached; values over ``max_value_bytes`` are refused before any verify work.

Cache-level tests run on memory and on the suite's real Redis."""

from __future__ import annotations

import enum
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from fc_helpers import Calls, Raw
from hypothesis import given, settings
from hypothesis import strategies as st

import freshcache
from freshcache import Cache, EncodeError
from freshcache.codecs import (
    PlainJsonCodec,
    TypedJsonCodec,
    ValueTooLarge,
    encode_checked,
    faithful,
)
from freshcache.keys import (
    HASHED_SEGMENT_MARK,
    MAX_NESTING,
    MAX_SEGMENT_LENGTH,
    BoundedMemo,
    PatternBuildError,
    Template,
    build_patterns,
    escape,
)

#: Cache-level tests run on memory and on the suite's real Redis (the cluster adds nothing
#: here: every check happens before a key reaches a backend, or is about its bytes).
memory_and_redis = pytest.mark.parametrize("backend_url", ["memory", "redis"], indirect=True)

SURROGATE = "caf\udce9"  # what os.fsdecode gives for the latin-1 bytes b"caf\xe9"
MEGABYTE = 1024 * 1024


def nested(depth: int) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return root


def self_referencing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def cyclic_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    return loop


def counted(cache: Cache, calls: Calls, **options: Any) -> Any:
    """A cached echo function: ``f(x)`` returns ``x`` and counts its runs."""

    @cache.cached(ttl=60, key_prefix=options.pop("key_prefix", "hostile"), **options)
    async def echo(x: Any) -> Any:
        calls(x)
        return "ok"

    return echo


# -- arguments that cannot be a key: a TypeError naming the parameter -------------------------


@memory_and_redis
@pytest.mark.parametrize(
    "make_value",
    [lambda: nested(5000), self_referencing, cyclic_dict, lambda: (nested(MAX_NESTING + 1),)],
    ids=["nested 5000 deep", "list containing itself", "dict containing itself", "just too deep"],
)
async def test_an_argument_too_deep_or_cyclic_is_a_type_error_naming_the_parameter(
    cache: Cache, make_value: Callable[[], Any]
) -> None:
    calls = Calls()
    echo = counted(cache, calls)
    with pytest.raises(TypeError) as info:
        await echo(make_value())
    message = str(info.value)
    assert "parameter 'x'" in message
    assert f"more than {MAX_NESTING} levels" in message
    assert "exclude=('x',)" in message
    assert len(message) < 500
    assert calls.count == 0


@memory_and_redis
async def test_nesting_up_to_the_limit_keys_fine(cache: Cache) -> None:
    calls = Calls()
    echo = counted(cache, calls)
    value = nested(MAX_NESTING - 1)
    assert await echo(value) == "ok"
    assert await echo(nested(MAX_NESTING - 1)) == "ok"  # an equal value: the same key
    assert calls.count == 1


# -- arguments that are values: they key fine ------------------------------------------------


@memory_and_redis
@pytest.mark.parametrize(
    ("value", "other"),
    [
        (10**5000, 10**5000 + 1),
        (-(10**5000), 10**5000),
        (SURROGATE, "café"),
        ("\ud800", "\udfff"),
        ("x" * MEGABYTE, "x" * MEGABYTE + "y"),
        ({"k": [SURROGATE, 10**5000]}, {"k": ["café", 10**5000]}),
    ],
    ids=["10**5000", "-10**5000", "surrogate", "lone high surrogate", "1 MB str", "in containers"],
)
async def test_a_hostile_value_keys_fine_and_stays_distinct(
    cache: Cache, value: Any, other: Any
) -> None:
    calls = Calls()
    echo = counted(cache, calls)
    assert await echo(value) == "ok"
    assert await echo(value) == "ok"
    assert calls.count == 1, "the second call must be a hit"
    assert await echo(other) == "ok"
    assert calls.count == 2, "a different value must have a different key"
    assert echo.key_for(value) != echo.key_for(other)


@memory_and_redis
async def test_hostile_values_in_a_key_template_give_short_encodable_keys(
    cache: Cache, raw: Raw
) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="day:{label}")
    async def report(label: Any) -> str:
        calls(label)
        return "report"

    for label in ["x" * MEGABYTE, 10**5000, SURROGATE, "\ud800" * 1000]:
        assert await report(label) == "report"
        assert await report(label) == "report"
        key = report.key_for(label)
        key.encode("utf-8")  # strict UTF-8, as Redis receives it
        assert len(key) < 300, key[:80]
    assert calls.count == 4
    for token_key in await raw.token_keys():
        assert len(token_key) < 300, token_key[:80]


@memory_and_redis
async def test_a_surrogate_in_a_template_literal_keys_and_invalidates(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix=f"{SURROGATE}:{{n}}")
    async def f(n: int) -> int:
        calls(n)
        return n

    await f(1)
    await f(1)
    assert calls.count == 1
    await cache.invalidate(f"{SURROGATE}:*")  # written with the surrogate, as the prefix was
    await f(1)
    assert calls.count == 2


@memory_and_redis
async def test_an_invalidation_pattern_built_from_a_long_value_matches_its_keys(
    cache: Cache,
) -> None:
    calls = Calls()
    big = "y" * MEGABYTE

    @cache.cached(ttl=60, key_prefix="doc:{name}")
    async def render(name: str) -> int:
        calls(name)
        return len(name)

    await render(big)
    await render("small")
    await cache.invalidate(freshcache.pattern("doc", big, "*"))
    await render(big)
    await render("small")
    assert calls.count == 3, "only the long value's entry is invalidated"


@memory_and_redis
async def test_megabyte_arguments_are_not_kept_by_the_memo_tables(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="memo:{a}")
    async def f(a: str) -> int:
        calls()  # not calls(a): Calls keeps its arguments
        return 1

    def distinct(i: int) -> str:
        return f"{i:08d}" + "z" * MEGABYTE

    await f(distinct(-1))  # warm up the code paths before measuring
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30):
            assert await f(distinct(i)) == 1
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert calls.count == 31
    # 30 distinct megabyte values went through; what stays must not grow with them.
    assert kept < 4 * MEGABYTE, f"{kept / MEGABYTE:.1f} MB kept after 30 x 1 MB arguments"


# -- invalidation patterns never raise after the write ----------------------------------------


@memory_and_redis
async def test_a_surrogate_in_an_invalidation_template_value_applies_every_pattern(
    cache: Cache,
) -> None:
    calls = Calls()

    class Booking(pydantic.BaseModel):
        name: str
        day: str

    @cache.cached(ttl=60, key_prefix="names:{name}")
    async def by_name(name: str) -> int:
        calls("name")
        return 1

    @cache.cached(ttl=60, key_prefix="stats")
    async def stats() -> int:
        calls("stats")
        return 2

    @cache.invalidate_cache("names:{result.name}:*", "stats:*")
    async def rename(name: str) -> Booking:
        return Booking(name=name, day="mon")

    await by_name(SURROGATE)
    await stats()
    assert calls.count == 2
    booking = await rename(SURROGATE)  # must not raise after the write
    assert booking.name == SURROGATE
    await by_name(SURROGATE)
    await stats()
    assert calls.count == 4, "both patterns were applied"


@memory_and_redis
async def test_a_pattern_that_cannot_be_built_falls_back_and_the_others_apply(
    cache: Cache,
) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="a:{n}")
    async def a(n: int) -> int:
        calls("a")
        return n

    @cache.cached(ttl=60, key_prefix="b")
    async def b() -> int:
        calls("b")
        return 0

    @cache.invalidate_cache("a:{result.missing}:*", "b:*")
    async def write() -> int:
        return 5  # an int has no .missing: that pattern cannot be built

    await a(1)
    await b()
    await write()
    await a(1)  # the fallback "a:*" covers what the broken pattern meant
    await b()
    assert calls.count == 4


def test_build_patterns_reports_each_failure_typed_and_builds_the_rest() -> None:
    roots = ["result"]
    templates = [
        Template("a:{result.missing}:*", roots, "invalidation pattern"),
        Template("b:{result}:*", roots, "invalidation pattern"),
        Template("{result.nope}:x", roots, "invalidation pattern"),
    ]
    built = build_patterns(templates, {"result": SURROGATE})
    assert built.patterns == ["a:*", f"b:{escape(SURROGATE)}:*", "*"]
    assert [f.template for f in built.failures] == ["a:{result.missing}:*", "{result.nope}:x"]
    for failure in built.failures:
        assert isinstance(failure, PatternBuildError)
        assert "missing" in failure.reason or "nope" in failure.reason
    for pattern in built.patterns:
        pattern.encode("utf-8")


# -- segments, escapes and memo tables (pure) --------------------------------------------------


def test_long_segments_are_hashed_to_a_bounded_unambiguous_segment() -> None:
    long = "w" * (MAX_SEGMENT_LENGTH + 1)
    hashed = escape(long)
    assert hashed.startswith(HASHED_SEGMENT_MARK)
    assert len(hashed) == len(HASHED_SEGMENT_MARK) + 32
    assert escape(long) == hashed  # deterministic
    assert escape(long + "w") != hashed
    exact = "w" * MAX_SEGMENT_LENGTH
    assert escape(exact) == exact  # at the limit: kept as it is
    # "%" is always escaped in values, so no short value can look like a hashed one.
    assert escape(hashed) != hashed
    assert escape(10**5000).startswith(HASHED_SEGMENT_MARK)
    assert escape(10**700) == escape(10**700)


# Text with lone surrogates, the characters escape() must neutralise, and plain letters.
_hostile_text = st.text(
    alphabet=st.characters(codec=None, categories=["Cs", "Ll", "Nd", "Po", "Sm", "Cc"])
    | st.sampled_from(list("%:*?[]\\")),
    max_size=300,
)
_hostile_scalars = _hostile_text | st.integers(min_value=-(10**900), max_value=10**900)


@settings(max_examples=300, deadline=None)
@given(a=_hostile_scalars, b=_hostile_scalars)
def test_escape_is_encodable_bounded_one_segment_and_injective(a: Any, b: Any) -> None:
    for value in (a, b):
        segment = escape(value)
        segment.encode("utf-8")  # strict: no surrogate survives
        assert len(segment) <= MAX_SEGMENT_LENGTH
        assert not set(segment) & set(":*?[]\\"), segment
    if a != b or type(a) is not type(b):
        # Distinct values never share a segment (hashed ones: but for a 128-bit collision).
        assert escape(a) != escape(b) or str(a) == str(b)


@settings(max_examples=200, deadline=None)
@given(value=_hostile_scalars, other=_hostile_scalars)
def test_hostile_scalars_always_hash_and_distinct_ones_apart(value: Any, other: Any) -> None:
    from freshcache.keys import ArgumentBinder, args_hash

    def f(x: Any) -> None: ...

    binder = ArgumentBinder(f)
    digest = args_hash(binder.key_part({"x": value}))  # never raises: no digit limit, no UTF-8
    assert len(digest) == 16
    assert digest == args_hash(binder.key_part({"x": value}))
    if type(value) is not type(other) or value != other:
        assert digest != args_hash(binder.key_part({"x": other}))


def test_surrogates_are_percent_encoded_as_their_surrogatepass_bytes() -> None:
    assert escape("\ud800") == "%ED%A0%80"
    assert escape(SURROGATE) == "caf%ED%B3%A9"
    assert escape("%ED%A0%80") != escape("\ud800")  # a literal "%" is escaped: no collision
    escape("\udfff" * 10).encode("utf-8")


def test_bounded_memo_is_bounded_by_entries_and_by_bytes() -> None:
    memo: BoundedMemo[int, str] = BoundedMemo(max_entries=10, max_bytes=6400)
    for i in range(25):
        memo.put(i, "v", 10)
        assert len(memo) <= 10
    assert memo.get(24) == "v"
    memo.clear()
    memo.put(1, "big", 101)  # over max_bytes // 64: never kept
    assert memo.get(1) is None
    for i in range(100):
        memo.put(i, "v", 100)
        assert memo.bytes <= 6400
        assert len(memo) <= 10


# -- values whose round trip changes their type: not cached, counted --------------------------


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@memory_and_redis
@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (float, 1),
        (int, True),
        (int, Level.HIGH),
        (list[float], [1.5, 2]),
        (dict[str, float], {"a": 1}),
        (tuple[int, float], (1, 2)),
        (float | None, 3),
        (set[float], {1.0, 2}),
    ],
    ids=["int as float", "bool as int", "IntEnum as int", "int in list[float]",
         "int in dict", "int in tuple", "int as Optional[float]", "int in set"],
)  # fmt: skip
async def test_a_value_whose_types_change_in_a_round_trip_is_not_cached(
    cache: Cache, raw: Raw, annotation: Any, value: Any
) -> None:
    calls = Calls()

    async def produce(n: int):  # type: ignore[no-untyped-def]
        calls(n)
        return value

    produce.__annotations__["return"] = annotation
    f = cache.cached(ttl=60, key_prefix="typed")(produce)
    assert await f(1) is value
    assert await f(1) is value  # never the converted value from a hit
    assert calls.count == 2
    assert await raw.get(f.key_for(1)) is None
    stats = cache.stats()["typed"]
    assert stats.errors_by_kind == {"encode": 2}
    assert stats.sets == 0


@memory_and_redis
async def test_a_value_with_the_annotated_types_is_still_cached(cache: Cache) -> None:
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="typed")
    async def f(n: int) -> dict[str, list[float | int]]:
        calls(n)
        return {"a": [1.5, 2]}

    first = await f(1)
    second = await f(1)
    assert calls.count == 1
    assert faithful(first, second)


# -- oversize values: refused before the verify decode ----------------------------------------

_decodes = Calls()


class Document(pydantic.BaseModel):
    """Counts its validations: they run when JSON is decoded, never when it is dumped."""

    body: str

    @pydantic.field_validator("body")
    @classmethod
    def _counted(cls, body: str) -> str:
        _decodes()
        return body


@memory_and_redis
async def test_an_oversize_value_is_refused_before_any_verify_decode(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache(max_value_bytes=MEGABYTE)
    raw = Raw(cache)
    calls = Calls()
    big = Document(body="b" * (2 * MEGABYTE))
    small = Document(body="small")

    @cache.cached(ttl=60, key_prefix="size")
    async def f(n: int) -> Document:
        calls(n)
        return big if n else small

    before = _decodes.count
    assert await f(1) is big
    assert _decodes.count == before, "the oversize value was decoded before being refused"
    assert await raw.get(f.key_for(1)) is None
    stats = cache.stats()["size"]
    assert stats.errors_by_kind == {"oversize": 1}
    assert await f(0) is small
    assert _decodes.count == before + 1, "a value within the limit is still verified"
    assert await f(0) == small  # and cached: the hit decodes once more
    assert _decodes.count == before + 2
    assert calls.count == 2
    await raw.aclose()


async def test_a_100_mb_return_value_is_returned_and_not_stored() -> None:
    # The refusal happens before any backend call: one backend is enough.
    cache = Cache.from_url("memory://", namespace="huge")  # default max_value_bytes: 1 MiB
    calls = Calls()
    huge = "h" * (100 * MEGABYTE)

    @cache.cached(ttl=60, key_prefix="huge")
    async def f() -> str:
        calls()
        return huge

    assert await f() is huge
    assert await f() is huge
    assert calls.count == 2
    assert cache.stats()["huge"].errors_by_kind == {"oversize": 2}
    await cache.aclose()


# -- the codec's check directly, with generated values ----------------------------------------

_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.none(),
)
_json_like = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=4),
    st.dictionaries(st.text(max_size=3), _scalars | st.lists(_scalars, max_size=3), max_size=3),
    st.lists(st.lists(_scalars, max_size=3), max_size=3),
)
_ANNOTATIONS = [
    float,
    int,
    list[float],
    dict[str, int],
    list[int | float],
    dict[str, list[float]],
    Any,
]


@settings(max_examples=150, deadline=None)
@given(value=_json_like, annotation=st.sampled_from(_ANNOTATIONS))
def test_what_encode_checked_accepts_decodes_to_the_same_types(value: Any, annotation: Any) -> None:
    codec = TypedJsonCodec(annotation) if annotation is not Any else PlainJsonCodec()
    try:
        payload = encode_checked(codec, value)
    except EncodeError:
        return  # not cached: always allowed
    decoded = codec.decode(payload)
    assert decoded == value
    assert faithful(value, decoded)


def test_encode_checked_checks_the_size_first() -> None:
    codec = TypedJsonCodec(Document)
    big, small = Document(body="q" * 1000), Document(body="q")
    before = _decodes.count
    with pytest.raises(ValueTooLarge) as info:
        encode_checked(codec, big, max_bytes=100)
    assert isinstance(info.value, EncodeError)  # old callers catching EncodeError still work
    assert (info.value.size, info.value.limit) == (1011, 100)
    assert _decodes.count == before
    assert encode_checked(codec, small, max_bytes=100) == b'{"body":"q"}'
    assert _decodes.count == before + 1


def test_faithful_compares_types_all_the_way_down() -> None:
    assert faithful({"a": [1, (2.0, "x")]}, {"a": [1, (2.0, "x")]})
    assert not faithful({"a": [1, (2.0, "x")]}, {"a": [1, (2, "x")]})
    assert not faithful([Level.LOW], [1])
    assert not faithful({1: "a"}, {1.0: "a"})
    assert not faithful({"a": 1}, {"b": 1})
    deep_a, deep_b = nested(10_000), nested(10_000)
    assert not faithful(deep_a, deep_b)  # too deep to prove: not cached, and no RecursionError


@memory_and_redis
async def test_a_bad_megabyte_pattern_is_refused_without_echoing_it(cache: Cache) -> None:
    with pytest.raises(ValueError, match="empty segment") as info:
        await cache.invalidate("p" * MEGABYTE + "::*")
    assert len(str(info.value)) < 500


@memory_and_redis
async def test_a_megabyte_pattern_as_written_is_applied(cache: Cache) -> None:
    calls = Calls()
    big = "q" * MEGABYTE

    @cache.cached(ttl=60, key_prefix="raw:{name}")
    async def f(name: str) -> int:
        calls()
        return 1

    await f(big)
    await f(big)
    assert calls.count == 1
    await cache.invalidate(f"raw:{escape(big)}:*")  # the escaped (hashed) segment, as written
    await f(big)
    assert calls.count == 2


class _NeverEncodes:
    """A codec that fails the test if asked to encode or decode anything."""

    name = "never"

    def encode(self, value: Any) -> bytes:
        raise AssertionError("encoded a value that was certainly too large")

    def decode(self, data: bytes) -> Any:
        raise AssertionError("decoded")


def test_strings_certainly_too_large_are_refused_without_encoding() -> None:
    for value in ["s" * 2000, [b"b" * 600, {"k": "v" * 600}], ("t" * 1001,)]:
        with pytest.raises(ValueTooLarge, match="at least") as info:
            encode_checked(_NeverEncodes(), value, max_bytes=1000)
        assert info.value.size > 1000
    # Models may leave fields out of their encoding: no floor is guessed for them.
    with pytest.raises(ValueTooLarge, match=r"is 2011 bytes"):
        encode_checked(TypedJsonCodec(Document), Document(body="d" * 2000), max_bytes=1000)
