"""``memory://``: the embedded backend. Bounded (entries and bytes, LRU), honours TTLs, safe
under asyncio and threads. Its clock is injectable so tests move time instead of sleeping.

URL options: ``memory://?max_entries=10000&max_bytes=67108864``.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable, Sequence

_OVERHEAD = 64  # rough per-entry bookkeeping bytes, so tiny values still count


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Redis glob semantics: ``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\x`` escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                out.append(f"[{'^' if negate else ''}{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class MemoryStore:
    """The synchronous store; ``AsyncMemoryBackend`` shares it without adding any waiting."""

    kind = "memory"

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("freshcache: memory:// max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (value, expires_at in clock seconds, or None for no expiry)
        self._data: collections.OrderedDict[str, tuple[bytes, float | None]] = (
            collections.OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.RLock()
        self.evictions = 0

    # -- internals (call with the lock held) -------------------------------------------------

    def _get(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= now:
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return value

    def _remove(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self._bytes -= len(key) + len(item[0]) + _OVERHEAD
        return True

    def _put(self, key: str, value: bytes, ttl_ms: int | None, now: float) -> None:
        self._remove(key)
        expires = None if ttl_ms is None or ttl_ms < 0 else now + ttl_ms / 1000
        self._data[key] = (value, expires)
        self._bytes += len(key) + len(value) + _OVERHEAD
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._data))
            self._remove(oldest)
            self.evictions += 1

    # -- the backend primitives ---------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        with self._lock:
            return [self._get(k, now) for k in keys]

    def create_tokens(
        self, route: str, keys: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        now = self._clock()
        out: list[bytes] = []
        with self._lock:
            for key, candidate in zip(keys, fresh, strict=True):
                current = self._get(key, now)
                if current is None:
                    self._put(key, candidate, ttl_ms, now)
                    current = candidate
                out.append(current)
        return out

    def store_if_unchanged(
        self,
        key: str,
        value: bytes,
        ttl_ms: int,
        lease: bytes,
        token_keys: Sequence[str],
        token_ttl_ms: int,
    ) -> bool:
        now = self._clock()
        with self._lock:
            current = self._get(key, now)
            if lease:
                unchanged = current is not None and current.startswith(lease)
            else:
                unchanged = current is None  # the empty lease: the reader saw no entry
            if not unchanged:
                return False
            for token_key in token_keys:
                item = self._data.get(token_key)
                if item is None or (item[1] is not None and item[1] <= now):
                    return False  # a token vanished: the value could never be valid
            for token_key in token_keys:
                token, expires = self._data[token_key]
                if expires is not None and expires < now + token_ttl_ms / 1000:
                    self._data[token_key] = (token, now + token_ttl_ms / 1000)
            self._put(key, value, ttl_ms, now)
            return True

    def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        now = self._clock()
        with self._lock:
            self._put(key, value, ttl_ms, now)

    def bump(self, key: str, token: bytes, ttl_ms: int) -> None:
        self.set(key, token, ttl_ms)

    def delete(self, keys: Sequence[str]) -> int:
        with self._lock:
            return sum(self._remove(k) for k in keys)

    def delete_matching(self, match: str, keep_prefix: str) -> int:
        regex = glob_to_regex(match)
        with self._lock:
            doomed = [k for k in self._data if regex.match(k) and not k.startswith(keep_prefix)]
            for key in doomed:
                self._remove(key)
        return len(doomed)

    def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        now = self._clock()
        with self._lock:
            if self._get(key, now) is not None:
                return False
            self._put(key, owner, ttl_ms, now)
            return True

    def release_lock(self, key: str, owner: bytes) -> None:
        now = self._clock()
        with self._lock:
            if self._get(key, now) == owner:
                self._remove(key)

    def ttl_ms(self, key: str) -> int | None:
        now = self._clock()
        with self._lock:
            if self._get(key, now) is None:
                return None
            expires = self._data[key][1]
            return -1 if expires is None else max(0, int((expires - now) * 1000))

    def scan(self, match: str, limit: int) -> list[str]:
        regex = glob_to_regex(match)
        now = self._clock()
        with self._lock:
            live = [k for k, (_, exp) in self._data.items() if exp is None or exp > now]
        return [k for k in live if regex.match(k)][:limit]

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    @property
    def size(self) -> tuple[int, int]:
        """``(entries, bytes)`` currently held."""
        return len(self._data), self._bytes


class AsyncMemoryBackend:
    """The async face of a ``MemoryStore``: every call completes without suspending."""

    kind = "memory"

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.store.get_many(keys)

    async def create_tokens(
        self, route: str, keys: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        return self.store.create_tokens(route, keys, fresh, ttl_ms)

    async def bump(self, key: str, token: bytes, ttl_ms: int) -> None:
        self.store.bump(key, token, ttl_ms)

    async def store_if_unchanged(
        self,
        key: str,
        value: bytes,
        ttl_ms: int,
        lease: bytes,
        token_keys: Sequence[str],
        token_ttl_ms: int,
    ) -> bool:
        return self.store.store_if_unchanged(key, value, ttl_ms, lease, token_keys, token_ttl_ms)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        self.store.set(key, value, ttl_ms)

    async def delete(self, keys: Sequence[str]) -> int:
        return self.store.delete(keys)

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        return self.store.delete_matching(match, keep_prefix)

    async def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        return self.store.acquire_lock(key, owner, ttl_ms)

    async def release_lock(self, key: str, owner: bytes) -> None:
        self.store.release_lock(key, owner)

    async def ttl_ms(self, key: str) -> int | None:
        return self.store.ttl_ms(key)

    async def scan(self, match: str, limit: int) -> list[str]:
        return self.store.scan(match, limit)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
