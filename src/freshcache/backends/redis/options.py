"""The redis-py connection options every freshcache pool uses (standalone and cluster)."""

from __future__ import annotations

from typing import Any


def pool_options(
    timeout: float, max_connections: int, pool_timeout: float, connect_timeout: float | None = None
) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": pool_timeout,
        "socket_timeout": timeout,
        # Opening a connection is rarer and slower than a command (a cold burst opens many at
        # once): by default it gets at least half a second, commands keep the tight timeout.
        "socket_connect_timeout": connect_timeout if connect_timeout else max(timeout, 0.5),
        "retry": None,
        "retry_on_error": [],
        "health_check_interval": 0,
    }
