"""Backends by URL. Optional dependencies are imported only when their scheme is used."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from freshcache.backends.base import AsyncBackend, BackendError, EntryKeys, SyncBackend
from freshcache.backends.budget import ConnectionBudget

__all__ = [
    "AsyncBackend",
    "BackendError",
    "BackendSet",
    "ConnectionOptions",
    "EntryKeys",
    "SyncBackend",
    "open_backends",
]

SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionOptions:
    timeout: float
    max_connections: int
    pool_timeout: float
    clock: Callable[[], float] = time.monotonic


class BackendSet:
    """The async and sync faces of one backend URL, each created on first use."""

    def __init__(self, url: str, options: ConnectionOptions) -> None:
        self.url = url
        self.scheme = _scheme(url)
        self.kind = (
            "memory"
            if self.scheme == "memory"
            else ("cluster" if self.scheme.endswith("+cluster") else "redis")
        )
        self._options = options
        self._async: AsyncBackend | None = None
        self._sync: SyncBackend | None = None
        self._lock = threading.Lock()
        #: Called when a Redis Cluster's slots move to other primaries with no failure seen
        #: (a failover the client learns of by MOVED or a map refresh): the cache re-checks.
        self.on_new_primaries: Callable[[], None] | None = None
        #: The async face's read when it completes without suspending (memory://): the async
        #: hit path calls it directly instead of awaiting a coroutine that never waits.
        self.read_now: Callable[[EntryKeys], list[bytes | None]] | None = None
        # One bound on the sockets to the server for both faces and every event loop.
        self.budget = ConnectionBudget(options.max_connections, options.pool_timeout)
        if self.kind == "cluster":
            import importlib

            # Check the URL now, so a bad one fails at configure time, not on the first call.
            importlib.import_module("freshcache.backends.cluster").parse_cluster_url(url)
        if self.kind == "memory":
            from freshcache.backends.memory import AsyncMemoryBackend, MemoryStore

            store = MemoryStore(clock=options.clock, **_memory_options(url))
            self._sync, self._async = store, AsyncMemoryBackend(store)
            self.read_now = store.get_many

    @property
    def async_backend(self) -> AsyncBackend:
        backend = self._async
        if backend is None:
            with self._lock:
                if self._async is None:
                    self._async = self._make(async_=True)
                backend = self._async
        assert backend is not None
        return backend

    @property
    def sync_backend(self) -> SyncBackend:
        backend = self._sync
        if backend is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._make(async_=False)
                backend = self._sync
        assert backend is not None
        return backend

    def use(
        self, *, async_backend: AsyncBackend | None = None, sync_backend: SyncBackend | None = None
    ) -> tuple[AsyncBackend | None, SyncBackend | None]:
        """Put the given faces in place of the URL's (benchmarks stub the I/O out with it);
        returns the previous ones, so they can be put back."""
        with self._lock:
            previous = self._async, self._sync
            if async_backend is not None:
                self._async = async_backend
                self.read_now = None
            if sync_backend is not None:
                self._sync = sync_backend
        return previous

    def _make(self, async_: bool) -> Any:
        o = self._options
        if self.kind == "cluster":
            import importlib

            # Imported by name: the cluster backend is optional and loaded only when used.
            cluster = importlib.import_module("freshcache.backends.cluster")
            cls: Any = cluster.AsyncClusterBackend if async_ else cluster.SyncClusterBackend
            # The cluster reads the time (refresh intervals, suspect nodes): the cache's clock.
            return cls(
                self.url,
                o.timeout,
                o.max_connections,
                o.pool_timeout,
                clock=o.clock,
                on_new_primaries=self._new_primaries,
            )
        from freshcache.backends import redis as redis_backend

        cls = redis_backend.AsyncRedisBackend if async_ else redis_backend.SyncRedisBackend
        return cls(self.url, o.timeout, o.max_connections, o.pool_timeout, budget=self.budget)

    def _new_primaries(self) -> None:
        if self.on_new_primaries is not None:
            self.on_new_primaries()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
        if self._sync is not None and self.kind != "memory":
            self._sync.close()

    def close(self) -> None:
        if self._sync is not None and self.kind != "memory":
            self._sync.close()
        # The async clients' sockets too: a sync caller has no loop to await them on.
        close_from_sync = getattr(self._async, "close_from_sync", None)
        if close_from_sync is not None:
            close_from_sync()


def _scheme(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"freshcache: cache URL {url!r} is not a URL; use memory://, redis://host:6379/0, "
            "rediss://... or redis+cluster://host:port,host:port"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"freshcache: unsupported cache URL scheme {scheme + '://'!r} in {url!r}; use one of "
            + ", ".join(s + "://" for s in SCHEMES)
        )
    return scheme


def _memory_options(url: str) -> dict[str, int]:
    query = parse_qs(urlsplit(url).query)
    options: dict[str, int] = {}
    for name, values in query.items():
        if name not in ("max_entries", "max_bytes"):
            raise ValueError(f"freshcache: unknown memory:// option {name!r} in {url!r}")
        try:
            options[name] = int(values[-1])
        except ValueError:
            raise ValueError(
                f"freshcache: memory:// option {name}={values[-1]!r} is not an integer"
            ) from None
    return options


def open_backends(url: str, options: ConnectionOptions) -> BackendSet:
    return BackendSet(url, options)
