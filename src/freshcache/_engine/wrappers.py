"""The objects ``@cached`` and ``@invalidate_cache`` return, for async and sync functions and
methods, bound to a cache through a reference resolved at call time (so the module-level
decorators can bind to the default cache lazily, and this module imports neither ``Cache`` nor
the configuration: it sits below both).

Whether a function is async is decided once, at decoration: ``cached`` returns an
``AsyncCachedFunction`` or a ``SyncCachedFunction``, whose ``__call__`` has no branch for it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from freshcache._engine.engine import Engine
from freshcache._engine.spec import FunctionSpec, Seconds
from freshcache.keys import WILDCARD, ArgumentBinder, Template, build_patterns
from freshcache.tokens import classify

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
log = logging.getLogger("freshcache")


class CacheHandle(Protocol):
    """What a decorated function needs of its cache (``Cache`` is one)."""

    @property
    def engine(self) -> Engine: ...


CacheRef = Callable[[], CacheHandle]


class CachedFunction(Generic[P, R]):
    """A cached function. Calls look like the original's (same signature, name, docstring,
    type hints); ``uncached`` calls through; ``invalidate(*args)`` drops one entry;
    ``warm(*args)`` recomputes and stores one entry; ``key_for(*args)`` shows the key."""

    is_async = False

    def __init__(self, func: Callable[P, R], spec: FunctionSpec, cache_ref: CacheRef) -> None:
        functools.update_wrapper(self, func)
        # With these, inspect.iscoroutinefunction() (and so FastAPI) sees what it would see on
        # the original function, on every supported Python.
        self.__code__ = func.__code__
        self.__defaults__ = getattr(func, "__defaults__", None)
        self.__kwdefaults__ = getattr(func, "__kwdefaults__", None)
        self.__wrapped__ = func
        self.spec = spec
        self._cache_ref = cache_ref

    @property
    def cache(self) -> Any:
        """The ``Cache`` this function reads and writes (resolved now: the default cache for
        the module-level decorator). Typed ``Any`` because this module sits below ``Cache``."""
        return self._cache_ref()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        raise NotImplementedError  # AsyncCachedFunction and SyncCachedFunction answer

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__wrapped__(*args, **kwargs)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Drop the entry of these arguments (a tombstone, race-free). Awaitable for async
        functions, immediate for sync ones."""
        raise NotImplementedError

    def warm(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute and store the entry of these arguments; returns the value."""
        raise NotImplementedError

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        engine = self._cache_ref().engine
        return engine.locate(self.spec, args, kwargs).entry

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> CachedFunction[P, R]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> BoundCachedFunction[P2, R]: ...

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundCachedFunction(self, instance)

    def __repr__(self) -> str:
        return f"<cached {self.spec.qualname} prefix={self.spec.prefix_label!r}>"


class AsyncCachedFunction(CachedFunction[P, R]):
    """A cached ``async def``: calls return the awaitable of the engine's async read path."""

    is_async = True

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cache_ref().engine.call_async(self.spec, args, kwargs)  # type: ignore[return-value]

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        """Drop the entry of these arguments (a tombstone, race-free); must be awaited, and
        typed so that a forgotten ``await`` is a type-checker error."""
        engine = self._cache_ref().engine
        pattern = engine.entry_pattern(self.spec, args, kwargs)
        return engine.invalidate((pattern,), label=self.spec.prefix_label)

    def warm(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cache_ref().engine.warm_async(self.spec, args, kwargs)  # type: ignore[return-value]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> AsyncCachedFunction[P, R]: ...

    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> BoundAsyncCachedFunction[P2, R]: ...

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else BoundAsyncCachedFunction(self, instance)


class SyncCachedFunction(CachedFunction[P, R]):
    """A cached plain function: calls run the engine's sync read path."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cache_ref().engine.call_sync(self.spec, args, kwargs)  # type: ignore[no-any-return]

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the entry of these arguments (a tombstone, race-free), now."""
        engine = self._cache_ref().engine
        pattern = engine.entry_pattern(self.spec, args, kwargs)
        engine.invalidate_sync((pattern,), label=self.spec.prefix_label)

    def warm(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cache_ref().engine.warm_sync(self.spec, args, kwargs)  # type: ignore[no-any-return]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> SyncCachedFunction[P, R]: ...

    @overload
    def __get__(
        self: SyncCachedFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> BoundSyncCachedFunction[P2, R]: ...

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else BoundSyncCachedFunction(self, instance)


class BoundCachedFunction(Generic[P, R]):
    """A cached method bound to its instance; the helpers are bound too."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: CachedFunction[Any, Any], instance: object) -> None:
        self.__func__ = func
        self.__self__ = instance

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.__func__(self.__self__, *args, **kwargs)
        return result

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.__func__.uncached(self.__self__, *args, **kwargs)
        return result

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.__func__.invalidate(self.__self__, *args, **kwargs)

    def warm(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.__func__.warm(self.__self__, *args, **kwargs)
        return result

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        return self.__func__.key_for(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func__, name)

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"


class BoundAsyncCachedFunction(BoundCachedFunction[P, R]):
    """A cached ``async def`` method bound to its instance: ``invalidate`` must be awaited."""

    __slots__ = ()

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        result: Coroutine[Any, Any, None] = self.__func__.invalidate(self.__self__, *args, **kwargs)
        return result


class BoundSyncCachedFunction(BoundCachedFunction[P, R]):
    """A cached plain method bound to its instance: ``invalidate`` returns nothing."""

    __slots__ = ()

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        self.__func__.invalidate(self.__self__, *args, **kwargs)


class CachedDecorator(Protocol):
    """What ``@cached(...)`` returns: ``async def`` functions become ``AsyncCachedFunction``
    (``invalidate`` returns a coroutine), plain ones ``SyncCachedFunction`` (it returns
    ``None``), so a type checker sees a forgotten ``await``."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, T]]
    ) -> AsyncCachedFunction[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> SyncCachedFunction[P, R]: ...


def cached(
    ttl: Seconds | None = None,
    key_prefix: str | None = None,
    *,
    exclude: Sequence[str] = (),
    key: Callable[..., object] | None = None,
    version: str | int | None = None,
    serializer: str = "json",
    signing_key: bytes | str | None = None,
    lock: bool = False,
    lock_timeout: Seconds = 5.0,
    early_refresh: bool = False,
    early_refresh_beta: float = 1.0,
    single_flight: bool = True,
    condition: Callable[[Any], object] | None = None,
    near: bool = True,
    cache_ref: CacheRef,
) -> CachedDecorator:
    """``freshcache.cached`` (documented there) with the cache given as a reference."""
    if key_prefix is not None and not isinstance(key_prefix, str):
        raise TypeError("freshcache: use @cached(ttl=SECONDS, key_prefix='a:b')")

    def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
        if not callable(func):
            raise TypeError(f"freshcache: @cached applied to {func!r}, which is not callable")
        if isinstance(func, staticmethod | classmethod):
            raise TypeError("freshcache: put @cached below @staticmethod / @classmethod")
        spec = FunctionSpec(
            func,
            ttl=ttl,
            key_prefix=key_prefix,
            exclude=exclude,
            key=key,
            version=version,
            serializer=serializer,
            signing_key=signing_key,
            lock=lock,
            lock_timeout=lock_timeout,
            early_refresh=early_refresh,
            early_refresh_beta=early_refresh_beta,
            single_flight=single_flight,
            condition=condition,
            near=near,
        )
        # Decided once, here: the call path of each class has no branch for it.
        wrapper: type[CachedFunction[Any, Any]] = (
            AsyncCachedFunction if inspect.iscoroutinefunction(func) else SyncCachedFunction
        )
        return wrapper(func, spec, cache_ref)

    return decorate  # type: ignore[return-value]  # the overloads say which class, by func


# ---------------------------------------------------------------------------------------------

PatternSource = str | Callable[..., "str | Sequence[str]"]


class _Invalidation:
    """The patterns of one ``@invalidate_cache``: resolved after the write returns."""

    def __init__(self, func: Callable[..., Any], sources: Sequence[PatternSource]) -> None:
        self.binder = ArgumentBinder(func)
        roots = [*self.binder.names, "result"]
        self.templates: list[Template] = []
        self.callables: list[Callable[..., Any]] = []
        for source in sources:
            if isinstance(source, str):
                template = Template(source, roots, "invalidation pattern")
                # Check the shape now (empty segments, stray brackets), with fields stood in.
                classify(template.fill(_Placeholders()))
                self.templates.append(template)
            elif callable(source):
                self.callables.append(source)
            else:
                raise TypeError(
                    f"freshcache: @invalidate_cache takes pattern strings or callables, got "
                    f"{type(source).__qualname__}"
                )

    def resolve(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        failed: Callable[[str], None] = lambda fallback: None,
    ) -> list[str]:
        """The patterns to invalidate. A pattern that cannot be built falls back to the
        broadest pattern it could have meant: coarser, never stale, never an error after a
        write that succeeded; ``failed(fallback)`` counts it. The others are kept as built."""
        arguments = self.binder.bind(args, kwargs)
        built = build_patterns(self.templates, {**arguments, "result": result})
        for failure in built.failures:
            log.error(
                "freshcache: could not fill invalidation pattern %r (%s); invalidating %r instead",
                failure.template,
                failure.reason,
                failure.fallback,
            )
            failed(failure.fallback)
        out = built.patterns
        for source in self.callables:
            try:
                produced = source(result=result, **arguments)
                patterns = [produced] if isinstance(produced, str) else list(produced)
                for pattern in patterns:
                    classify(pattern)
                    out.append(pattern)
            except Exception:
                log.exception(
                    "freshcache: invalidation callable %r failed; invalidating the whole namespace",
                    source,
                )
                failed(WILDCARD)
                out.append(WILDCARD)
        return out


class _Placeholders(dict[str, Any]):
    """Stand-ins for every template field, to check a pattern's shape at decoration time."""

    def __missing__(self, key: str) -> Any:
        return _Anything("x")


class _Anything(str):
    __slots__ = ()

    def __getattr__(self, name: str) -> _Anything:
        return self


def invalidate_cache(
    *patterns: PatternSource,
    cache_ref: CacheRef,
    rewarm: Sequence[Callable[..., Any]] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``freshcache.invalidate_cache`` (documented there), the cache given as a reference."""
    if not patterns:
        raise ValueError("freshcache: @invalidate_cache needs at least one pattern")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        plan = _Invalidation(func, patterns)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_write(*args: P.args, **kwargs: P.kwargs) -> Any:
                result = await func(*args, **kwargs)
                engine = cache_ref().engine
                patterns = plan.resolve(args, kwargs, result, engine.ledger.record_pattern_error)
                await engine.invalidate(patterns)
                await _rewarm_async(engine, rewarm, plan, args, kwargs, result)
                return result

            return async_write  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_write(*args: P.args, **kwargs: P.kwargs) -> R:
            result = func(*args, **kwargs)
            engine = cache_ref().engine
            patterns = plan.resolve(args, kwargs, result, engine.ledger.record_pattern_error)
            engine.invalidate_sync(patterns)
            _rewarm_sync(engine, rewarm, plan, args, kwargs, result)
            return result

        return sync_write

    return decorate


async def _rewarm_async(
    engine: Engine,
    rewarm: Sequence[Callable[..., Any]],
    plan: _Invalidation,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: Any,
) -> None:
    if not rewarm:
        return
    arguments = plan.binder.bind(args, kwargs)

    async def run() -> None:
        for warm in rewarm:
            try:
                produced = warm(result=result, **arguments)
                if inspect.isawaitable(produced):
                    await produced
            except Exception:
                log.exception("freshcache: re-warming with %r failed", warm)

    scope = engine.scope()
    if scope is not None:
        scope.run_after(run)  # after the unit of work has applied its invalidations
    else:
        await run()


def _rewarm_sync(
    engine: Engine,
    rewarm: Sequence[Callable[..., Any]],
    plan: _Invalidation,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: Any,
) -> None:
    if not rewarm:
        return
    arguments = plan.binder.bind(args, kwargs)

    def run() -> None:
        for warm in rewarm:
            try:
                warm(result=result, **arguments)
            except Exception:
                log.exception("freshcache: re-warming with %r failed", warm)

    scope = engine.scope()
    if scope is not None:
        scope.run_after(run)
    else:
        run()
