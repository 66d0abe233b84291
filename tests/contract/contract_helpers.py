"""One face of a backend, driven the same way whichever it is: the engine's own typed
operations (``freshcache._engine.ops``) run through ``on_async`` or ``on_sync``, so the suite also
exercises the seam between the procedures and the backends."""

from __future__ import annotations

from typing import Any, TypeVar

from freshcache._engine.ops import BackendOp
from freshcache.backends import BackendSet, EntryKeys

R = TypeVar("R")


class Face:
    def __init__(self, backends: BackendSet, is_async: bool, namespace: str) -> None:
        self.backends = backends
        self.is_async = is_async
        self.ns = namespace

    def entry(self, *segments: str, tokens: int = 2) -> EntryKeys:
        """An entry key of this test's namespace and the token keys of its first prefixes."""
        key = ":".join((self.ns, *segments))
        token_keys = [
            f"{self.ns}:__gen__",
            *[f"{self.ns}:__gen__:" + ":".join(segments[:i]) for i in range(1, tokens)],
        ]
        return EntryKeys.of(key, token_keys)

    async def run(self, op: BackendOp[R]) -> R:
        if self.is_async:
            return await op.on_async(self.backends.async_backend)
        return op.on_sync(self.backends.sync_backend)

    async def call(self, method: str, *args: Any) -> Any:
        """The primitives no procedure yields (tooling: ``ttl_ms``, ``scan``, ``ping``)."""
        if self.is_async:
            return await getattr(self.backends.async_backend, method)(*args)
        return getattr(self.backends.sync_backend, method)(*args)
