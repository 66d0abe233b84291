"""Which URLs each command takes, the namespace default, and opening a Cache for a command.

Every live command takes ``redis://``, ``rediss://``, ``unix://`` and ``redis+cluster://``
(``rediss+cluster://`` for TLS); ``stats`` also takes a service's ``http(s)://.../metrics``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from freshcache.cli.errors import CliError

if TYPE_CHECKING:
    from freshcache import Cache
    from freshcache.tokens import PatternPlan

DEFAULT_NAMESPACE = "freshcache"  # Cache's default; FRESHCACHE_NAMESPACE overrides it
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
METRICS_SCHEMES = ("http://", "https://")


def namespace_or_default(value: str | None) -> str:
    return value or os.environ.get("FRESHCACHE_NAMESPACE") or DEFAULT_NAMESPACE


def is_cluster(url: str) -> bool:
    return url.lower().startswith(CLUSTER_SCHEMES)


def is_metrics(url: str) -> bool:
    return url.lower().startswith(METRICS_SCHEMES)


def redact(url: str) -> str:
    from freshcache.audit.live import redact as redact_password

    return redact_password(url)


def check_backend_url(url: str) -> None:
    """A URL a live command can reach: a Redis server or a Redis Cluster."""
    if is_cluster(url):
        return  # Cache.from_url checks the host list when the command opens the cache
    from freshcache.audit.live import LiveError, check_redis_url

    try:
        check_redis_url(url)
    except LiveError as exc:
        raise CliError(str(exc)) from None


def check_pattern(pattern: str) -> PatternPlan:
    from freshcache.tokens import classify

    try:
        return classify(pattern)
    except (ValueError, TypeError) as exc:
        detail = str(exc).removeprefix("freshcache: ")
        raise CliError(f"malformed pattern {pattern!r}: {detail}") from None


async def open_cache(url: str, namespace: str, call_timeout: float) -> Cache:
    """A Cache on ``url`` that answered a ping; a one-line CliError otherwise."""
    from freshcache import Cache

    try:
        cache = Cache.from_url(url, namespace=namespace, timeout=call_timeout)
    except (ValueError, TypeError) as exc:
        detail = str(exc).removeprefix("freshcache: ")
        raise CliError(f"bad cache URL {redact(url)}: {detail}") from None
    if not await cache.ping():
        health: dict[str, Any] = cache.health()
        last = health.get("last_error") or "no answer"
        await cache.aclose()
        raise CliError(f"cannot reach the cache backend at {redact(url)}: {last}")
    return cache
