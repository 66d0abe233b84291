"""The memory:// hit memo: per entry key, what the last judged hit of that entry found (the
entry's bytes, the token list it was checked against, and the payload sliced out of it).

``MemoryStore.read_parts`` hands out the same two objects while nothing changed (the stored
bytes, and the token list it remembers until any token changes), so when both are identical
to the remembered ones, the stamp, the validity test and the slice are those of the last hit:
two identity checks replace joining the stamp, ``startswith``, ``find`` and the slice. The
memo holds references to both objects, so neither can be freed and its identity reused by
another while it is remembered; anything that changed the entry or a token (a re-store, an
invalidation, an expiry, an eviction) makes the store answer with another object or None, and
the next read is judged afresh. Bounded by entries and bytes: past either limit it is cleared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from freshcache._engine.spec import FunctionSpec
from freshcache.entry import HEADER_END, TOKEN_END
from freshcache.metrics import Counters

#: A remembered hit: ``(entry bytes, token list, payload, spec, its decode, its counters)``.
#: The spec is checked too (two functions may share a key): the decode and the counters are
#: that spec's, looked up once.
Judged = tuple[bytes, Sequence[bytes | None], bytes, FunctionSpec, Callable[[bytes], Any], Counters]

#: Entries remembered at most, and bytes they keep alive (entries and payloads) at most.
MEMO_ENTRIES = 4096
MEMO_BYTES = 16 * 1024 * 1024


class HitMemo:
    __slots__ = ("_lock", "bytes", "entries", "max_bytes", "max_entries")

    def __init__(self, max_entries: int = MEMO_ENTRIES, max_bytes: int = MEMO_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: entry key -> the last hit judged for it. Read on the hit path directly.
        self.entries: dict[str, Judged] = {}
        self.bytes = 0
        self._lock = threading.Lock()  # for the bookkeeping; the hit path only reads

    def judge(
        self,
        key: str,
        raw: bytes | None,
        tokens: Sequence[bytes | None],
        spec: FunctionSpec,
        counters: Counters,
    ) -> Judged | None:
        """Judge one read as ``EntryRules.judge`` would; a hit is remembered and returned.
        None for anything else (a missing entry or token, a tombstone, a stale or malformed
        entry): the caller takes the full read path, which counts and handles it."""
        if raw is None or None in tokens:
            return None
        stamp = TOKEN_END.join(tokens) + TOKEN_END  # type: ignore[arg-type]
        if not raw.startswith(stamp):
            return None
        end = raw.find(HEADER_END, len(stamp))
        if end < 0:
            return None
        judged = (raw, tokens, raw[end + 1 :], spec, spec.codec.decode, counters)
        size = len(raw) + len(judged[2])
        entries = self.entries
        with self._lock:
            previous = entries.pop(key, None)
            if previous is not None:
                self.bytes -= len(previous[0]) + len(previous[2])
            if len(entries) >= self.max_entries or self.bytes + size > self.max_bytes:
                entries.clear()
                self.bytes = 0
            if size <= self.max_bytes // 64:  # one large entry must not push out many small ones
                entries[key] = judged
                self.bytes += size
        return judged
