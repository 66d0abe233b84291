"""The public surface: names, configuration, lazy binding, bound
decorators, validation errors, and the fidelity of the wrappers."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from decimal import Decimal

import fc_future_annotations as future
import pytest
from fc_helpers import Calls

import freshcache
import freshcache.config
from freshcache import Cache, cached, invalidate_cache

# Decorated at import, before anything is configured: the call must use whatever cache is the
# default when it runs (module-level decorators bind lazily).
import_time_calls = Calls()


@cached(ttl=60, key_prefix="lazy:stats")
async def lazily_bound(n: int) -> int:
    """Doubles n."""
    import_time_calls(n)
    return 2 * n


@invalidate_cache("lazy:*")
async def lazily_bound_write() -> str:
    return "written"


@pytest.fixture
def default_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No default cache and no FRESHCACHE_* variables during the test; restored after."""
    monkeypatch.setattr(freshcache.config, "_default", None)
    monkeypatch.delenv("FRESHCACHE_URL", raising=False)
    monkeypatch.delenv("FRESHCACHE_NAMESPACE", raising=False)
    yield
    current = freshcache.config._default
    if current is not None:
        current.close()


# -- names ------------------------------------------------------------------------------------


def test_all_is_sorted_and_names_the_documented_surface() -> None:
    documented = {"Cache", "cached", "configure", "escape", "get_cache", "invalidate_cache"}
    documented |= {"pattern", "PrefixStats", "BackendError", "EncodeError", "DecodeError"}
    assert list(freshcache.__all__) == sorted(freshcache.__all__)
    assert documented <= set(freshcache.__all__)
    for name in freshcache.__all__:
        assert hasattr(freshcache, name), name
    assert freshcache.cached is cached
    assert freshcache.invalidate_cache is invalidate_cache
    assert freshcache.Cache is Cache


def test_the_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("freshcache").joinpath("py.typed").is_file()


# -- configure / get_cache --------------------------------------------------------------------


@pytest.mark.usefixtures("default_cache")
def test_configure_sets_the_default_cache() -> None:
    cache = freshcache.configure(url="memory://", namespace="myhibachi")
    assert freshcache.get_cache() is cache
    assert cache.namespace == "myhibachi"
    assert cache.backend_kind == "memory"


@pytest.mark.usefixtures("default_cache")
def test_configure_without_arguments_reads_the_environment_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRESHCACHE_URL", "memory://?max_entries=50")
    monkeypatch.setenv("FRESHCACHE_NAMESPACE", "from-env")
    cache = freshcache.configure()
    assert cache.url == "memory://?max_entries=50"
    assert cache.namespace == "from-env"
    # Read at configure time, never per call: changing the environment changes nothing.
    monkeypatch.setenv("FRESHCACHE_NAMESPACE", "changed")
    assert freshcache.get_cache() is cache
    assert freshcache.get_cache().namespace == "from-env"


@pytest.mark.usefixtures("default_cache")
def test_get_cache_configures_from_the_environment_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRESHCACHE_NAMESPACE", "first-use")
    cache = freshcache.get_cache()
    assert cache.namespace == "first-use"
    assert cache.backend_kind == "memory"  # the default URL
    assert freshcache.get_cache() is cache


@pytest.mark.usefixtures("default_cache")
def test_defaults_without_environment() -> None:
    cache = freshcache.get_cache()
    assert (cache.url, cache.namespace) == ("memory://", "freshcache")


@pytest.mark.usefixtures("default_cache")
async def test_module_level_decorators_bind_lazily_to_the_configured_cache() -> None:
    first = freshcache.configure(url="memory://", namespace="lazy-one")
    before = import_time_calls.count
    assert await lazily_bound(21) == 42
    assert await lazily_bound(21) == 42
    assert import_time_calls.count == before + 1
    assert lazily_bound.key_for(21).startswith("lazy-one:lazy:stats:lazily_bound:")
    assert first.stats()["lazy:stats"].hits == 1

    assert await lazily_bound_write() == "written"  # invalidates in the default cache too
    assert first.stats()["lazy:stats"].invalidations == {"generation": 1}
    assert await lazily_bound(21) == 42
    assert import_time_calls.count == before + 2

    second = freshcache.configure(url="memory://", namespace="lazy-two")
    assert await lazily_bound(21) == 42  # a new default: nothing cached there yet
    assert import_time_calls.count == before + 3
    assert second.stats()["lazy:stats"].misses == 1
    assert lazily_bound.key_for(21).startswith("lazy-two:")


async def test_bound_decorators_use_their_cache_only() -> None:
    one = Cache.from_url("memory://", namespace="one")
    two = Cache.from_url("memory://", namespace="two")
    calls = Calls()

    @one.cached(ttl=60, key_prefix="shop:items")
    async def items() -> list[str]:
        calls()
        return ["a"]

    @two.invalidate_cache("shop:*")
    async def write_two() -> None:
        return None

    @one.invalidate_cache("shop:*")
    async def write_one() -> None:
        return None

    await items()
    await write_two()  # another cache: this one keeps its entry
    await items()
    assert calls.count == 1
    await write_one()
    await items()
    assert calls.count == 2
    assert items.cache is one
    assert "shop:items" not in two.stats()


# -- Cache.from_url options and their validation ----------------------------------------------


def test_from_url_accepts_the_documented_options() -> None:
    cache = Cache.from_url(
        "memory://?max_entries=100&max_bytes=100000",
        namespace="opts",
        timeout=0.2,
        breaker_threshold=3,
        breaker_cooldown=1.5,
        max_value_bytes=2048,
        max_connections=10,
        default_ttl=30,
        strategy="scan",
    )
    assert cache.timeout == 0.2
    assert cache.max_value_bytes == 2048
    assert cache.breaker.threshold == 3
    assert cache.breaker.cooldown == 1.5
    assert cache.strategy.value == "scan"
    assert cache.default_ttl_ms == 30_000
    assert cache.backend_kind == "memory"
    assert Cache.from_url("redis://127.0.0.1:1/0").backend_kind == "redis"  # lazy: no connect
    assert Cache.from_url("rediss://127.0.0.1:1/0").backend_kind == "redis"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("mysql://localhost/0", {}, "unsupported cache URL scheme 'mysql://'"),
        ("localhost:6379", {}, "is not a URL"),
        ("memory://?max_entrys=3", {}, "unknown memory:// option 'max_entrys'"),
        ("memory://?max_entries=many", {}, "max_entries='many' is not an integer"),
        ("memory://?max_entries=0", {}, "must be positive"),
        ("memory://", {"timeout": -1}, "timeout must be a positive number"),
        ("memory://", {"timeout": 0}, "timeout must be a positive number"),
        ("memory://", {"pool_timeout": -0.5}, "pool_timeout must be a positive number"),
        ("memory://", {"strategy": "lru"}, "unknown strategy 'lru'"),
        ("memory://", {"max_value_bytes": 0}, "max_value_bytes"),
        ("memory://", {"max_connections": 0}, "max_connections"),
        ("memory://", {"breaker_threshold": 0}, "breaker_threshold"),
        ("memory://", {"breaker_cooldown": -1}, "breaker_cooldown"),
        ("memory://", {"default_ttl": 0}, "default_ttl must be positive"),
        ("memory://", {"namespace": ""}, "namespace must be a non-empty string"),
        ("memory://", {"namespace": "my*app"}, "without wildcards"),
    ],
)
def test_from_url_rejects_bad_options_with_a_clear_error(
    url: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("?", r"\?")):
        Cache.from_url(url, **options)  # type: ignore[arg-type]


def test_from_url_rejects_an_unknown_option() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        Cache.from_url("memory://", no_such_option=1)


# -- decorator validation at decoration time --------------------------------------------------


async def _noop(day: str) -> None:
    return None


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ttl": -1}, ValueError, "ttl must be positive"),
        ({"ttl": 0}, ValueError, "ttl must be positive"),
        ({"ttl": "60"}, ValueError, "ttl='60' is not a duration; use seconds"),  # no unit
        ({"ttl": [60]}, TypeError, "ttl must be seconds"),
        ({"key_prefix": "booking::stats"}, ValueError, "has an empty segment"),
        ({"key_prefix": "booking:*"}, ValueError, "wildcards belong in invalidation patterns"),
        ({"key_prefix": "__gen__:x"}, ValueError, "reserved"),
        ({"key_prefix": "booking:{date}"}, ValueError, r"refers to \{date\}.*\['day'\]"),
        ({"key_prefix": "booking:{day!r}"}, ValueError, "conversions are not supported"),
        ({"exclude": ("session",)}, ValueError, r"exclude= names \['session'\]"),
        ({"serializer": "pickle"}, ValueError, "requires signing_key"),
        ({"serializer": "pickle", "signing_key": b"short"}, ValueError, "at least 16 bytes"),
        ({"serializer": "yaml"}, ValueError, "unknown serializer 'yaml'"),
        ({"key": "not callable"}, TypeError, "key= must be a callable"),
    ],
)
def test_cached_rejects_bad_declarations_at_decoration_time(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    cache = Cache.from_url("memory://", namespace="decl")
    options.setdefault("key_prefix", "booking:stats")
    with pytest.raises(error, match=message):
        cache.cached(**options)(_noop)


@pytest.mark.parametrize(
    ("patterns", "error", "message"),
    [
        ((), ValueError, "needs at least one pattern"),
        (("booking::*",), ValueError, "has an empty segment"),
        (("booking:[ab:*",), ValueError, "unbalanced"),
        (("",), ValueError, "empty invalidation pattern"),
        (("__gen__:*",), ValueError, "freshcache's own keys"),
        ((42,), TypeError, "pattern strings or callables"),
        (("booking:{nope}:*",), ValueError, r"refers to \{nope\}"),
    ],
)
def test_invalidate_cache_rejects_bad_patterns_at_decoration_time(
    patterns: tuple[object, ...], error: type[Exception], message: str
) -> None:
    cache = Cache.from_url("memory://", namespace="decl")
    with pytest.raises(error, match=message):
        cache.invalidate_cache(*patterns)(_noop)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("", "empty invalidation pattern"), ("a::*", "empty segment"), ("__gen__:*", "own keys")],
)
async def test_imperative_invalidate_rejects_bad_patterns(pattern: str, message: str) -> None:
    cache = Cache.from_url("memory://", namespace="decl")
    with pytest.raises(ValueError, match=message):
        await cache.invalidate(pattern)
    with pytest.raises(ValueError, match=message):
        cache.invalidate_sync(pattern)


# -- wrapper fidelity -------------------------------------------------------------------------


async def _stats_original(day: str, limit: int = 10, *, tz: str | None = None) -> dict[str, int]:
    """Dashboard stats of one day."""
    return {"day": len(day), "limit": limit}


def _sync_original(a: int, b: Decimal = Decimal("1.5")) -> Decimal:
    """Adds."""
    return a + b


@pytest.mark.parametrize(
    "original",
    [_stats_original, _sync_original, future.available_slots, future.price_of],
    ids=["async", "sync", "future-async", "future-sync"],
)
def test_wrappers_keep_signature_hints_name_doc_and_kind(
    original: typing.Callable[..., object],
) -> None:
    cache = Cache.from_url("memory://", namespace="fidelity")
    wrapper = cache.cached(ttl=60, key_prefix="fidelity")(original)
    assert inspect.signature(wrapper) == inspect.signature(original)
    assert typing.get_type_hints(wrapper) == typing.get_type_hints(original)
    assert wrapper.__name__ == original.__name__
    assert wrapper.__qualname__ == original.__qualname__
    assert wrapper.__doc__ == original.__doc__
    assert wrapper.__module__ == original.__module__
    assert wrapper.__wrapped__ is original
    is_async = inspect.iscoroutinefunction(original)
    assert inspect.iscoroutinefunction(wrapper) is is_async
    assert is_async == (original in (_stats_original, future.available_slots))


def test_module_level_wrappers_in_a_future_annotations_module() -> None:
    for wrapper, original in [
        (future.cached_available_slots, future.available_slots),
        (future.cached_price_of, future.price_of),
    ]:
        assert typing.get_type_hints(wrapper) == typing.get_type_hints(original)
        assert inspect.signature(wrapper) == inspect.signature(original)
    assert typing.get_type_hints(future.cached_available_slots)["return"] == list[future.Slot]


@pytest.mark.usefixtures("default_cache")
async def test_future_annotations_decode_a_hit_to_the_annotated_type() -> None:
    import datetime as dt

    freshcache.configure(url="memory://", namespace="future")
    day = dt.date(2025, 10, 11)
    miss = await future.cached_available_slots(day)
    hit = await future.cached_available_slots(day)
    assert hit == miss == [future.Slot(day, Decimal("99.80"))]
    assert type(hit[0]) is future.Slot
    assert type(hit[0].price) is Decimal
    assert freshcache.get_cache().stats()["future:slots"].hits == 1


def test_invalidate_cache_wrappers_keep_their_identity() -> None:
    cache = Cache.from_url("memory://", namespace="fidelity")
    wrapped = cache.invalidate_cache("booking:*")(_stats_original)
    assert inspect.signature(wrapped) == inspect.signature(_stats_original)
    assert typing.get_type_hints(wrapped) == typing.get_type_hints(_stats_original)
    assert (wrapped.__name__, wrapped.__doc__) == ("_stats_original", _stats_original.__doc__)
    assert inspect.iscoroutinefunction(wrapped)
    sync = cache.invalidate_cache("booking:*")(_sync_original)
    assert not inspect.iscoroutinefunction(sync)
    assert sync(1) == Decimal("2.5")


async def test_uncached_calls_through_every_time() -> None:
    cache = Cache.from_url("memory://", namespace="fidelity")
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="p")
    async def value(n: int) -> int:
        return calls(n)

    assert await value(1) == 1
    assert await value.uncached(1) == 2
    assert await value.uncached(1) == 3
    assert await value(1) == 1  # the cached entry is untouched by uncached calls


# -- methods ----------------------------------------------------------------------------------


def _service_classes(cache: Cache) -> tuple[type, type]:
    class Bookings:
        def __init__(self) -> None:
            self.calls = Calls()

        @cache.cached(ttl=60, key_prefix="svc")
        async def active(self, day: str) -> list[str]:
            """Active bookings of a day."""
            n = self.calls(day)
            return [f"bookings:{day}:{n}"]

    class Chefs:
        def __init__(self) -> None:
            self.calls = Calls()

        @cache.cached(ttl=60, key_prefix="svc")
        async def active(self, day: str) -> list[str]:
            n = self.calls(day)
            return [f"chefs:{day}:{n}"]

    return Bookings, Chefs


async def test_methods_call_uncached_invalidate_and_warm() -> None:
    cache = Cache.from_url("memory://", namespace="methods")
    bookings_cls, _ = _service_classes(cache)
    svc = bookings_cls()
    assert await svc.active("mon") == ["bookings:mon:1"]
    assert await svc.active("mon") == ["bookings:mon:1"]
    assert await svc.active.uncached("mon") == ["bookings:mon:2"]
    assert await svc.active("mon") == ["bookings:mon:1"]
    await svc.active.invalidate("mon")
    assert await svc.active("mon") == ["bookings:mon:3"]
    assert await svc.active.warm("mon") == ["bookings:mon:4"]
    assert await svc.active("mon") == ["bookings:mon:4"]
    assert svc.calls.count == 4
    # The descriptor keeps the wrapper's identity on the class and the bound method.
    assert bookings_cls.active.__name__ == "active"
    assert bookings_cls.active.__doc__ == "Active bookings of a day."
    assert svc.active.__name__ == "active"
    assert "self" in inspect.signature(bookings_cls.active).parameters


async def test_self_is_not_in_the_key_so_instances_share_entries() -> None:
    cache = Cache.from_url("memory://", namespace="methods")
    bookings_cls, _ = _service_classes(cache)
    first, second = bookings_cls(), bookings_cls()
    assert first.active.key_for("mon") == second.active.key_for("mon")
    assert await first.active("mon") == ["bookings:mon:1"]
    assert await second.active("mon") == ["bookings:mon:1"]
    assert second.calls.count == 0


async def test_same_named_methods_of_two_classes_do_not_collide() -> None:
    cache = Cache.from_url("memory://", namespace="methods")
    bookings_cls, chefs_cls = _service_classes(cache)
    bookings, chefs = bookings_cls(), chefs_cls()
    assert bookings.active.key_for("mon") != chefs.active.key_for("mon")
    assert ".Bookings.active:" in bookings.active.key_for("mon")
    assert ".Chefs.active:" in chefs.active.key_for("mon")
    assert await bookings.active("mon") == ["bookings:mon:1"]
    assert await chefs.active("mon") == ["chefs:mon:1"]
    await bookings.active.invalidate("mon")  # one entry only
    assert await chefs.active("mon") == ["chefs:mon:1"]
    assert await bookings.active("mon") == ["bookings:mon:2"]


async def test_classmethods_and_staticmethods() -> None:
    cache = Cache.from_url("memory://", namespace="methods")
    calls = Calls()

    class Catalogue:
        @classmethod
        @cache.cached(ttl=60, key_prefix="cat")
        async def by_class(cls, n: int) -> int:
            calls(n)
            return n + 1

        @staticmethod
        @cache.cached(ttl=60, key_prefix="cat")
        async def by_static(n: int) -> int:
            calls(n)
            return n + 2

    assert await Catalogue.by_class(1) == 2
    assert await Catalogue.by_class(1) == 2
    assert await Catalogue().by_static(1) == 3
    assert await Catalogue.by_static(1) == 3
    assert calls.count == 2

    with pytest.raises(TypeError, match="below @staticmethod"):
        cache.cached(ttl=60)(staticmethod(_noop))  # type: ignore[arg-type]
