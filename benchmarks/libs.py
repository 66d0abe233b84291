"""Every library under comparison, set up the same way against one Redis URL.

``build(lib, url, body, ...)`` decorates ``body(arg)`` with a library's cache decorator and
returns a ``Subject``: the cached function, how to invalidate one argument's entry (the
library's own way), and how to close it. Every library gets the same payload, the same
server, the same pool size and socket timeout where it has those settings, and hiredis.

The libraries, and what "default" and "best" (anti-stampede) mean for each:

========== ===================================== ==========================================
library    default                                best anti-stampede configuration
========== ===================================== ==========================================
freshcache ``@cache.cached`` (single-flight)      ``lock=True`` (distributed lock)
cashews    ``@cache(ttl=...)`` (protected=True)   ``lock=True``
aiocache   ``@cached(cache=Cache.REDIS)``         ``@cached_stampede(lease=2)``
dogpile    ``cache_on_arguments`` (sync, mutex)   ``distributed_lock=True``
naive      GET + json + blake2b(args), SET        (none)
floor      raw redis-py GET + orjson              (none)
========== ===================================== ==========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from benchmarks.common import POOL_SIZE, SOCKET_TIMEOUT

ASYNC_LIBS = ("floor", "freshcache", "cashews", "aiocache", "naive")
SYNC_LIBS = ("floor", "freshcache", "dogpile", "naive")
NAMESPACE = "bench"
#: "freshcache-verify": freshcache with the sampled shadow read on, at the suggested rate.
VERIFY_RATE = 0.001

# cashews and aiocache log every failed command at ERROR with a traceback; an outage run
# would print thousands of them. The outcome is measured, not read from logs.
for _name in ("cashews", "aiocache", "freshcache", "dogpile"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


@dataclasses.dataclass
class Subject:
    lib: str
    is_async: bool
    call: Callable[[Any], Any]  # call(arg) -> value (a coroutine for async subjects)
    invalidate: Callable[[Any], Any]  # invalidate(arg): the library's own per-entry way
    close: Callable[[], Any]
    keys: Callable[[Any], list[str]]  # the Redis keys one entry occupies (for MEMORY USAGE)


def _host_port_db(url: str) -> tuple[str, int, int]:
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return parts.hostname or "127.0.0.1", parts.port or 6379, db


def redis_kwargs(timeout: float = SOCKET_TIMEOUT, *, sync: bool = False) -> dict[str, Any]:
    """redis-py connection settings shared by every library: freshcache's timeouts, no
    retries (redis-py 6+ retries 3 times with up to 10 s of backoff by default, which would
    turn a one-second outage into many seconds per call), no periodic health checks."""
    retry_cls = redis.retry.Retry if sync else redis.asyncio.retry.Retry
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
        "retry": retry_cls(NoBackoff(), 0),
    }


def naive_hash(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The original design's args hash: BLAKE2b of the repr of the arguments."""
    return hashlib.blake2b(f"{args}{sorted(kwargs.items())}".encode(), digest_size=8).hexdigest()


# ------------------------------------------------------------------------------ async


def build_async(
    lib: str,
    url: str,
    body: Callable[[Any], Awaitable[Any]],
    *,
    ttl: int = 300,
    prefix: str = "booking:stats",
    best: bool = False,
    timeout: float = SOCKET_TIMEOUT,
    cache_options: dict[str, Any] | None = None,
) -> Subject:
    """One library's async cached ``body``; ``best`` selects its anti-stampede setup."""
    host, port, db = _host_port_db(url)
    name = f"{prefix}:{lib}"  # every library's keys live under its own name

    if lib in ("floor", "floor-blocking"):
        # The floor uses redis-py's default pool; "floor-blocking" the waiting pool that
        # freshcache uses (so that 1,000 callers wait for a connection instead of failing).
        if lib == "floor":
            client = redis.asyncio.Redis(
                host=host, port=port, db=db, max_connections=POOL_SIZE, **redis_kwargs(timeout)
            )
        else:
            client = redis.asyncio.Redis.from_pool(
                redis.asyncio.BlockingConnectionPool(
                    host=host,
                    port=port,
                    db=db,
                    max_connections=POOL_SIZE,
                    timeout=1.0,
                    **redis_kwargs(timeout),
                )
            )

        async def floor_call(arg: Any) -> Any:
            key = f"{NAMESPACE}:{name}:{arg}"
            raw = await client.get(key)
            if raw is not None:
                return orjson.loads(raw)
            value = await body(arg)
            await client.set(key, orjson.dumps(value), ex=ttl)
            return value

        async def floor_invalidate(arg: Any) -> None:
            await client.delete(f"{NAMESPACE}:{name}:{arg}")

        return Subject(
            lib,
            True,
            floor_call,
            floor_invalidate,
            client.aclose,
            lambda arg: [f"{NAMESPACE}:{name}:{arg}"],
        )

    if lib in ("freshcache", "freshcache-verify"):
        import freshcache

        options = {"timeout": timeout, "max_connections": POOL_SIZE, **(cache_options or {})}
        if lib == "freshcache-verify":
            options.setdefault("verify_rate", VERIFY_RATE)
        cache = freshcache.Cache.from_url(url, namespace=NAMESPACE, **options)

        async def fc_body(arg: int) -> dict:  # type: ignore[type-arg]
            return await body(arg)  # type: ignore[no-any-return]

        fc_body.__qualname__ = f"{lib}_get"
        fn = cache.cached(ttl=ttl, key_prefix=name, lock=best)(fc_body)

        def fc_keys(arg: Any) -> list[str]:
            loc = fn.spec.locate(NAMESPACE, (arg,), {})
            return [loc.key, *loc.token_keys]

        return Subject(lib, True, fn, fn.invalidate, cache.aclose, fc_keys)

    if lib == "cashews":
        from cashews import Cache as CashewsCache

        cashews = CashewsCache()
        cashews.setup(
            f"redis://{host}:{port}/{db}",
            max_connections=POOL_SIZE,
            wait_for_connection_timeout=1,
            client_name=None,
            socket_keepalive=False,
            **redis_kwargs(timeout),
        )
        key = f"{NAMESPACE}:{name}:{{arg}}"

        @cashews(ttl=ttl, key=key, lock=best)
        async def cashews_get(arg: Any) -> Any:
            return await body(arg)

        async def cashews_invalidate(arg: Any) -> None:
            await cashews.delete(key.format(arg=arg))

        async def cashews_close() -> None:
            await cashews.close()

        return Subject(
            lib,
            True,
            cashews_get,
            cashews_invalidate,
            cashews_close,
            lambda arg: [key.format(arg=arg)],
        )

    if lib == "aiocache":
        from aiocache import Cache as AioCache
        from aiocache import cached, cached_stampede
        from aiocache.serializers import JsonSerializer

        decorator = cached_stampede if best else cached
        extra: dict[str, Any] = {"lease": 2} if best else {}
        aio_key = f"{NAMESPACE}:{name}:{{}}"

        @decorator(
            ttl=ttl,
            cache=AioCache.REDIS,
            endpoint=host,
            port=port,
            db=db,
            serializer=JsonSerializer(),
            key_builder=lambda f, arg: aio_key.format(arg),
            timeout=max(timeout, 0.05) if timeout else None,
            pool_max_size=POOL_SIZE,
            connection_pool_kwargs={
                k: v for k, v in redis_kwargs(timeout).items() if k != "socket_connect_timeout"
            },
            create_connection_timeout=timeout,
            **extra,
        )
        async def aiocache_get(arg: Any) -> Any:
            return await body(arg)

        async def aio_invalidate(arg: Any) -> None:
            await aiocache_get.cache.delete(aio_key.format(arg))

        async def aio_close() -> None:
            await aiocache_get.cache.close()

        return Subject(
            lib, True, aiocache_get, aio_invalidate, aio_close, lambda arg: [aio_key.format(arg)]
        )

    if lib == "naive":
        client = redis.asyncio.Redis(
            host=host, port=port, db=db, max_connections=POOL_SIZE, **redis_kwargs(timeout)
        )
        naive_get = naive_cached_async(client, ttl, f"{NAMESPACE}:{name}")(body)

        async def naive_invalidate(arg: Any) -> None:
            await client.delete(naive_get.key_for(arg))  # type: ignore[attr-defined]

        return Subject(
            lib,
            True,
            naive_get,
            naive_invalidate,
            client.aclose,
            lambda arg: [naive_get.key_for(arg)],
        )  # type: ignore[attr-defined]

    raise ValueError(f"unknown async library {lib!r}")


def naive_cached_async(client: Any, ttl: int, prefix: str) -> Callable[..., Any]:
    """The original design's decorator, as hand-written by most teams: GET, json, SET;
    a Redis error means "run uncached" (so a cached None and a miss look alike)."""

    def decorate(func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        def key_for(*args: Any, **kwargs: Any) -> str:
            return f"{prefix}:{func.__name__}:{naive_hash(args, kwargs)}"

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = key_for(*args, **kwargs)
            try:
                raw = await client.get(key)
                if raw is not None:
                    return json.loads(raw)
            except redis.RedisError:
                pass
            value = await func(*args, **kwargs)
            with contextlib.suppress(redis.RedisError):
                await client.set(key, json.dumps(value, default=str), ex=ttl)
            return value

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        return wrapper

    return decorate


# ------------------------------------------------------------------------------ sync


def build_sync(
    lib: str,
    url: str,
    body: Callable[[Any], Any],
    *,
    ttl: int = 300,
    prefix: str = "booking:stats",
    best: bool = False,
    timeout: float = SOCKET_TIMEOUT,
    cache_options: dict[str, Any] | None = None,
) -> Subject:
    host, port, db = _host_port_db(url)
    name = f"{prefix}:{lib}-sync"

    if lib == "floor":
        pool = redis.BlockingConnectionPool(
            host=host,
            port=port,
            db=db,
            max_connections=POOL_SIZE,
            **redis_kwargs(timeout, sync=True),
        )
        client = redis.Redis(connection_pool=pool)

        def floor_call(arg: Any) -> Any:
            key = f"{NAMESPACE}:{name}:{arg}"
            raw = client.get(key)
            if raw is not None:
                return orjson.loads(raw)
            value = body(arg)
            client.set(key, orjson.dumps(value), ex=ttl)
            return value

        return Subject(
            lib,
            False,
            floor_call,
            lambda arg: client.delete(f"{NAMESPACE}:{name}:{arg}"),
            client.close,
            lambda arg: [f"{NAMESPACE}:{name}:{arg}"],
        )

    if lib in ("freshcache", "freshcache-verify"):
        import freshcache

        options = {"timeout": timeout, "max_connections": POOL_SIZE, **(cache_options or {})}
        if lib == "freshcache-verify":
            options.setdefault("verify_rate", VERIFY_RATE)
        cache = freshcache.Cache.from_url(url, namespace=NAMESPACE, **options)

        def fc_body(arg: int) -> dict:  # type: ignore[type-arg]
            return body(arg)  # type: ignore[no-any-return]

        fc_body.__qualname__ = f"{lib}_get_sync"
        fn = cache.cached(ttl=ttl, key_prefix=name, lock=best)(fc_body)

        def fc_keys(arg: Any) -> list[str]:
            loc = fn.spec.locate(NAMESPACE, (arg,), {})
            return [loc.key, *loc.token_keys]

        return Subject(lib, False, fn, fn.invalidate, cache.close, fc_keys)

    if lib == "dogpile":
        from dogpile.cache import make_region

        arguments: dict[str, Any] = {
            "host": host,
            "port": port,
            "db": db,
            "redis_expiration_time": ttl,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "connection_kwargs": {
                "health_check_interval": 0,
                "max_connections": POOL_SIZE,
                "retry": redis.retry.Retry(NoBackoff(), 0),
            },
        }
        if best:
            arguments.update(
                distributed_lock=True, thread_local_lock=False, lock_timeout=5, lock_sleep=0.01
            )
        region = make_region().configure(
            "dogpile.cache.redis", expiration_time=ttl, arguments=arguments
        )

        def dogpile_get(arg: Any) -> Any:
            return body(arg)

        namespace = f"{NAMESPACE}:{name}"
        key_of = region.function_key_generator(namespace, dogpile_get)
        cached_get = region.cache_on_arguments(namespace=namespace)(dogpile_get)
        return Subject(
            lib,
            False,
            cached_get,
            cached_get.invalidate,
            lambda: region.backend.writer_client.close(),
            lambda arg: [key_of(arg)],
        )

    if lib == "naive":
        pool = redis.BlockingConnectionPool(
            host=host,
            port=port,
            db=db,
            max_connections=POOL_SIZE,
            **redis_kwargs(timeout, sync=True),
        )
        client = redis.Redis(connection_pool=pool)
        naive_get = naive_cached_sync(client, ttl, f"{NAMESPACE}:{name}")(body)
        return Subject(
            lib,
            False,
            naive_get,
            lambda arg: client.delete(naive_get.key_for(arg)),  # type: ignore[attr-defined]
            client.close,
            lambda arg: [naive_get.key_for(arg)],
        )  # type: ignore[attr-defined]

    raise ValueError(f"unknown sync library {lib!r}")


def naive_cached_sync(client: Any, ttl: int, prefix: str) -> Callable[..., Any]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        def key_for(*args: Any, **kwargs: Any) -> str:
            return f"{prefix}:{func.__name__}:{naive_hash(args, kwargs)}"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = key_for(*args, **kwargs)
            try:
                raw = client.get(key)
                if raw is not None:
                    return json.loads(raw)
            except redis.RedisError:
                pass
            value = func(*args, **kwargs)
            with contextlib.suppress(redis.RedisError):
                client.set(key, json.dumps(value, default=str), ex=ttl)
            return value

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        return wrapper

    return decorate


async def maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
        return await value
    return value
