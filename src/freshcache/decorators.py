"""``@cached`` and ``@invalidate_cache``, for async and sync functions and methods.

Module-level decorators bind to the default cache lazily (at call time), so they can be
applied at import, before ``freshcache.configure()``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from freshcache.keys import SEGMENT_SEPARATOR, WILDCARD, ArgumentBinder, Template
from freshcache.spec import FunctionSpec, Seconds
from freshcache.tokens import classify

if TYPE_CHECKING:
    from freshcache.cache import Cache

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")
log = logging.getLogger("freshcache")

CacheRef = Callable[[], "Cache"]


def _default_cache() -> Cache:
    from freshcache.config import get_cache

    return get_cache()


class CachedFunction(Generic[P, R]):
    """A cached function. Calls look like the original's (same signature, name, docstring,
    type hints); ``uncached`` calls through; ``invalidate(*args)`` drops one entry;
    ``warm(*args)`` recomputes and stores one entry; ``key_for(*args)`` shows the key."""

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
        self.is_async = inspect.iscoroutinefunction(func)

    @property
    def cache(self) -> Cache:
        return self._cache_ref()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        cache = self._cache_ref()
        if self.is_async:
            return cache._call_async(self.spec, args, kwargs)  # type: ignore[return-value]
        return cache._call_sync(self.spec, args, kwargs)  # type: ignore[no-any-return]

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__wrapped__(*args, **kwargs)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Drop the entry of these arguments (a tombstone, race-free). Awaitable for async
        functions, immediate for sync ones."""
        cache = self._cache_ref()
        pattern = cache.entry_pattern(self.spec, args, kwargs)
        if self.is_async:
            return cache.invalidate(pattern, label=self.spec.prefix_label)
        return cache.invalidate_sync(pattern, label=self.spec.prefix_label)

    def warm(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute and store the entry of these arguments; returns the value."""
        cache = self._cache_ref()
        if self.is_async:
            return cache._warm_async(self.spec, args, kwargs)  # type: ignore[return-value]
        return cache._warm_sync(self.spec, args, kwargs)  # type: ignore[no-any-return]

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        return self._cache_ref().key_for(self.spec, args, kwargs)

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
    cache: Cache | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's result under ``{namespace}:{key_prefix}:{qualname}:{args_hash}``.

    - ``ttl``: seconds (or timedelta); the cache's ``default_ttl`` when omitted.
    - ``key_prefix``: segments separated by ``:``; may contain ``{param}`` / ``{param.attr}``
      templates filled from the call's arguments (escaped). Defaults to the module name.
    - ``exclude``: parameters left out of the key (DB sessions, requests); ``self``/``cls``
      are always left out.
    - ``key``: a callable with the function's parameters returning the last key segment,
      instead of the hash of the arguments.
    - ``version``: an extra segment, so a new value format never reads old entries.
    - ``serializer``: ``"json"`` (typed by the return annotation) or ``"pickle"``, which
      requires ``signing_key`` (HMAC-SHA256; unsigned or tampered entries are misses).
    - ``lock``: a distributed lock so that one caller across processes computes a missing
      value; the others wait (backoff, at most ``lock_timeout``), then compute themselves.
    - ``early_refresh``: probabilistic early recomputation (XFetch) of hot entries.
    - ``single_flight``: concurrent misses in one process share one computation (default).
    """
    if isinstance(ttl, str) or (key_prefix is not None and not isinstance(key_prefix, str)):
        raise TypeError("freshcache: use @cached(ttl=SECONDS, key_prefix='a:b')")
    cache_ref: CacheRef = _default_cache if cache is None else (lambda: cache)

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
        )
        return CachedFunction(func, spec, cache_ref)

    return decorate


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

    def resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> list[str]:
        """The patterns to invalidate. A pattern that cannot be built falls back to the
        broadest pattern it could have meant: coarser, never stale, never an error after a
        write that succeeded."""
        arguments = self.binder.bind(args, kwargs)
        values = {**arguments, "result": result}
        out: list[str] = []
        for template in self.templates:
            try:
                out.append(template.fill(values))
            except Exception:
                fallback = _literal_prefix_pattern(template.text)
                log.exception(
                    "freshcache: could not fill invalidation pattern %r; invalidating %r instead",
                    template.text,
                    fallback,
                )
                out.append(fallback)
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


def _literal_prefix_pattern(text: str) -> str:
    literal = text.split("{", 1)[0]
    segments = [s for s in literal.split(SEGMENT_SEPARATOR)[:-1] if s]
    return SEGMENT_SEPARATOR.join([*segments, WILDCARD])


def invalidate_cache(
    *patterns: PatternSource,
    cache: Cache | None = None,
    rewarm: Sequence[Callable[..., Any]] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """After the decorated write returns without raising, invalidate ``patterns``.

    Each pattern is a string (``"booking:*"``, or a template over the arguments and
    ``result``: ``"booking:availability:{result.event_date}:*"``, values escaped) or a callable
    ``(result, **arguments) -> pattern | [patterns]``. Inside ``cache.deferred()`` (a unit of
    work) they are applied when it commits. ``rewarm``: callables ``(result, **arguments)``
    run after the invalidation, e.g. ``lambda result, **kw: get_stats.warm()``.
    """
    if not patterns:
        raise ValueError("freshcache: @invalidate_cache needs at least one pattern")
    cache_ref: CacheRef = _default_cache if cache is None else (lambda: cache)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        plan = _Invalidation(func, patterns)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_write(*args: P.args, **kwargs: P.kwargs) -> Any:
                result = await func(*args, **kwargs)
                target = cache_ref()
                await target.invalidate(*plan.resolve(args, kwargs, result))
                await _rewarm_async(target, rewarm, plan, args, kwargs, result)
                return result

            return async_write  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_write(*args: P.args, **kwargs: P.kwargs) -> R:
            result = func(*args, **kwargs)
            target = cache_ref()
            target.invalidate_sync(*plan.resolve(args, kwargs, result))
            _rewarm_sync(target, rewarm, plan, args, kwargs, result)
            return result

        return sync_write

    return decorate


async def _rewarm_async(
    cache: Cache,
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

    scope = cache._scope()
    if scope is not None:
        scope.after.append(run)  # after the unit of work has applied its invalidations
    else:
        await run()


def _rewarm_sync(
    cache: Cache,
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

    scope = cache._scope()
    if scope is not None:
        scope.after.append(run)
    else:
        run()
