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

from freshcache.backends.base import EntryKeys
from freshcache.entry import lease_matches

_OVERHEAD = 64  # rough per-entry bookkeeping bytes, so tiny values still count
TOKEN_SPARE = 64  # token slots beyond one per entry: the prefixes' tokens


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


class _Table:
    """One LRU map with TTLs, bounded by entries and bytes (call with the store's lock held)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # key -> (value, expires_at in clock seconds, or None for no expiry)
        self.data: collections.OrderedDict[str, tuple[bytes, float | None]] = (
            collections.OrderedDict()
        )
        self.bytes = 0
        self.evictions = 0
        #: Counts every key added or removed (expiry and eviction included): a read that
        #: remembers this number knows nothing it read has been replaced while it is unchanged.
        self.changes = 0

    def get(self, key: str, now: float) -> bytes | None:
        item = self.data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= now:
            self.remove(key)
            return None
        self.data.move_to_end(key)
        return value

    def remove(self, key: str) -> bool:
        item = self.data.pop(key, None)
        if item is None:
            return False
        self.bytes -= len(key) + len(item[0]) + _OVERHEAD
        self.changes += 1
        return True

    def put(self, key: str, value: bytes, ttl_ms: int | None, now: float) -> None:
        self.remove(key)
        expires = None if ttl_ms is None or ttl_ms < 0 else now + ttl_ms / 1000
        self.data[key] = (value, expires)
        self.bytes += len(key) + len(value) + _OVERHEAD
        self.changes += 1
        while len(self.data) > self.max_entries or self.bytes > self.max_bytes:
            self.remove(next(iter(self.data)))
            self.evictions += 1

    def extend(self, key: str, ttl_ms: int, now: float) -> None:
        value, expires = self.data[key]
        if expires is not None and expires < now + ttl_ms / 2000:  # as the Redis script
            self.data[key] = (value, now + ttl_ms / 1000)


class MemoryStore:
    """The synchronous store; ``AsyncMemoryBackend`` shares it without adding any waiting.

    Generation tokens live in a table of their own (twice the entry bound, plus room for the
    prefixes' tokens: every entry has a token of its own), so the bound on entries counts
    entries: with ``max_entries=3`` three entries fit, whatever their tokens.
    Evicting a token is safe (a missing token means "invalid"), only wasteful. Which table a
    key belongs to is known from the call (``EntryKeys.tokens``, ``bump``), never from its text.
    """

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
        #: The clock of every TTL here (``read_parts`` takes a reading of it).
        self.clock = clock
        self._entries = _Table(max_entries, max_bytes)
        # Room for each entry's own token and the prefix tokens they share.
        self._tokens = _Table(2 * max_entries + TOKEN_SPARE, max_bytes)
        self._entry_data = self._entries.data  # the same dict, one attribute nearer the hit
        self._lock = threading.RLock()
        # The tokens a hit read, per set of token keys, while the token table is unchanged
        # (any token put, removed, expired or evicted empties it): a hot entry's tokens are
        # looked up, and moved to the LRU end, once per change instead of once per hit.
        # Bounded by the token table: only reads that found every token are remembered.
        self._token_reads: dict[tuple[str, ...], tuple[float, list[bytes | None]]] = {}
        self._token_reads_at = -1

    @property
    def evictions(self) -> int:
        return self._entries.evictions + self._tokens.evictions

    # -- the backend primitives ---------------------------------------------------------------

    def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        raw, tokens = self.read_parts(keys, self.clock())
        return [raw, *tokens]

    def read_parts(
        self, keys: EntryKeys, now: float
    ) -> tuple[bytes | None, Sequence[bytes | None]]:
        """The hit path of memory://: what ``get_many`` reads, as ``(entry, tokens)``, at
        ``now`` (this store's clock, read by the caller). One lock, the tables' dicts read
        directly (a method call per key was a third of a hit's cost); an expired item goes
        through ``_Table.get``.

        While nothing changed, both parts are the *same objects* from one read to the next:
        the entry is the bytes object stored, and the tokens are the list remembered in
        ``_token_reads`` (any token put, removed, expired or evicted makes a new one), so a
        caller holding both may reuse what it derived from them after two identity checks.
        The token list is shared: read it, never change it."""
        lock = self._lock
        lock.acquire()  # not ``with``: a third cheaper, and this is every hit's one lock
        try:
            item = self._entry_data.get(keys.entry)
            if item is None:
                raw = None
            elif item[1] is not None and item[1] <= now:
                raw = self._entries.get(keys.entry, now)
            else:
                self._entry_data.move_to_end(keys.entry)
                raw = item[0]
            table = self._tokens
            if self._token_reads_at != table.changes:
                self._token_reads.clear()
                self._token_reads_at = table.changes
            else:
                read = self._token_reads.get(keys.tokens)
                if read is not None and now < read[0]:
                    return raw, read[1]
            tokens = table.data
            found: list[bytes | None] = []
            valid_until = float("inf")
            for key in keys.tokens:
                item = tokens.get(key)
                if item is None:
                    found.append(None)
                elif item[1] is not None and item[1] <= now:
                    found.append(table.get(key, now))
                else:
                    tokens.move_to_end(key)
                    found.append(item[0])
                    if item[1] is not None and item[1] < valid_until:
                        valid_until = item[1]
            if table.changes == self._token_reads_at and None not in found:
                self._token_reads[keys.tokens] = (valid_until, found)
            return raw, found
        finally:
            lock.release()

    def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        now = self.clock()
        out: list[bytes] = []
        tokens = self._tokens
        with self._lock:
            for key, candidate in zip(missing, fresh, strict=True):
                current = tokens.get(key, now)
                if current is None:
                    tokens.put(key, candidate, ttl_ms, now)
                    current = candidate
                out.append(current)
        return out

    def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        now = self.clock()
        tokens = self._tokens
        with self._lock:
            if not lease_matches(lease, self._entries.get(keys.entry, now)):
                return False
            if any(tokens.get(k, now) is None for k in keys.tokens):
                return False  # a token vanished: the value could never be valid
            for token_key in keys.tokens:
                tokens.extend(token_key, token_ttl_ms, now)
            self._entries.put(keys.entry, value, ttl_ms, now)
            return True

    def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        now = self.clock()
        with self._lock:
            self._entries.put(key, value, ttl_ms, now)

    def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        now = self.clock()
        with self._lock:
            self._tokens.put(token_key, token, ttl_ms, now)

    def unlink_token(self, token_key: str) -> None:
        with self._lock:
            self._tokens.remove(token_key)

    def server_identity(self) -> bytes | None:
        return None  # in this process: it cannot come back with older data

    def delete(self, keys: Sequence[str]) -> int:
        with self._lock:
            # Either table: a tool may delete a token key, as an operator can on Redis.
            return sum(self._entries.remove(k) or self._tokens.remove(k) for k in keys)

    def _live_keys(self, now: float) -> list[str]:
        return [
            k
            for table in (self._entries, self._tokens)
            for k, (_, expires) in table.data.items()
            if expires is None or expires > now
        ]

    def delete_matching(self, match: str, keep_prefix: str) -> int:
        regex = glob_to_regex(match)
        with self._lock:
            doomed = [
                k for k in self._live_keys(self.clock())
                if regex.match(k) and not k.startswith(keep_prefix)
            ]  # fmt: skip
            for key in doomed:
                # Whichever table holds it (a glob may reach token keys outside keep_prefix).
                if not self._entries.remove(key):
                    self._tokens.remove(key)
        return len(doomed)

    def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        now = self.clock()
        with self._lock:
            if self._entries.get(key, now) is not None:
                return False
            self._entries.put(key, owner, ttl_ms, now)
            return True

    def release_lock(self, key: str, owner: bytes) -> None:
        now = self.clock()
        with self._lock:
            if self._entries.get(key, now) == owner:
                self._entries.remove(key)

    def ttl_ms(self, key: str) -> int | None:
        now = self.clock()
        with self._lock:
            table = self._holding(key, now)
            if table is None:
                return None
            expires = table.data[key][1]
            return -1 if expires is None else max(0, int((expires - now) * 1000))

    def scan(self, match: str, limit: int) -> list[str]:
        regex = glob_to_regex(match)
        with self._lock:
            live = self._live_keys(self.clock())
        return [k for k in live if regex.match(k)][:limit]

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    # -- for tools and tests: any key, entry or token, as Redis's own commands would see it

    def _holding(self, key: str, now: float) -> _Table | None:
        for table in (self._entries, self._tokens):
            if table.get(key, now) is not None:
                return table
        return None

    def peek(self, key: str) -> bytes | None:
        """What is stored at ``key``, whichever table holds it."""
        now = self.clock()
        with self._lock:
            table = self._holding(key, now)
            return None if table is None else table.get(key, now)

    @property
    def size(self) -> tuple[int, int]:
        """``(entries, bytes)`` currently held, tokens not counted."""
        return len(self._entries.data), self._entries.bytes


class AsyncMemoryBackend:
    """The async face of a ``MemoryStore``: every call completes without suspending."""

    kind = "memory"

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        return self.store.get_many(keys)

    async def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        return self.store.create_tokens(keys, missing, fresh, ttl_ms)

    async def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        self.store.bump(token_key, token, ttl_ms)

    async def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        return self.store.store_if_unchanged(keys, value, ttl_ms, lease, token_ttl_ms)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        self.store.set(key, value, ttl_ms)

    async def unlink_token(self, token_key: str) -> None:
        self.store.unlink_token(token_key)

    async def server_identity(self) -> bytes | None:
        return None

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
