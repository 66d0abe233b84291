"""What each backend method sends, and to which slot (pure, no I/O): built once here for the
asyncio and the sync backend, so that both send the same commands."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from freshcache.backends.base import EntryKeys
from freshcache.backends.cluster.layout import TAG_LENGTH, ShardLayout
from freshcache.backends.redis.scripts import (
    RELEASE_LOCK,
    SCAN_COUNT,
    STORE_IF_UNCHANGED,
    UNLINK_BATCH,
)

NO_OPTIONS: dict[str, Any] = {}
_SET_GET = {"get": True}  # redis-py turns a SET reply into a bool unless told GET was asked

#: (slot, command): one command for the primary of a slot.
Routed = tuple[int, tuple[Any, ...]]
#: (slot, command, redis-py options): one command of a batch.
Item = tuple[int, tuple[Any, ...], dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        # SHA-1 because that is the name Redis gives a script (EVALSHA), not for security.
        return cls(source, hashlib.sha1(source.encode()).hexdigest())

    def evalsha(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def eval(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVAL", self.source, len(keys), *keys, *args)


STORE = Script.of(STORE_IF_UNCHANGED)
RELEASE = Script.of(RELEASE_LOCK)

#: (slot, script, keys, args): one script on the primary of a slot.
ScriptCall = tuple[int, Script, list[str], list[Any]]


def _placed(layout: ShardLayout, key: str) -> tuple[int, str]:
    """The slot of ``key`` and its stored name, in its own shard."""
    shard = layout.shard_of(key)
    return layout.slots[shard], layout.tags[shard] + key


def get_many(layout: ShardLayout, keys: EntryKeys) -> Routed:
    shard = layout.shard_of(keys.entry)  # the entry routes its token keys
    tag, slot = layout.tags[shard], layout.slots[shard]
    return slot, ("MGET", *[tag + key for key in keys.fetch])


def create_tokens(
    layout: ShardLayout,
    keys: EntryKeys,
    missing: Sequence[str],
    fresh: Sequence[bytes],
    ttl_ms: int,
) -> list[Item]:
    """One slot (the entry's), so one pipeline on one node."""
    shard = layout.shard_of(keys.entry)
    tag, slot = layout.tags[shard], layout.slots[shard]
    return [
        (slot, ("SET", tag + key, token, "NX", "GET", "PX", ttl_ms), _SET_GET)
        for key, token in zip(missing, fresh, strict=True)
    ]


def tokens_now(previous: Sequence[bytes | None], fresh: Sequence[bytes]) -> list[bytes]:
    """The tokens after ``create_tokens``: the one that was there, else the fresh one."""
    return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]


def bump(layout: ShardLayout, token_key: str, token: bytes, ttl_ms: int) -> list[Item]:
    # XX: rewrite the copies that exist. A shard without one has no valid entry under this
    # prefix, and a copy created there later is created after this bump, so whoever creates
    # it computes after the write this invalidates.
    return [
        (slot, ("SET", tag + token_key, token, "XX", "PX", ttl_ms), NO_OPTIONS)
        for tag, slot in zip(layout.tags, layout.slots, strict=True)
    ]


def unlink_token(layout: ShardLayout, token_key: str) -> list[Item]:
    """UNLINK every copy of a token (a refused bump's fallback: missing means invalid)."""
    return [
        (slot, ("UNLINK", tag + token_key), NO_OPTIONS)
        for tag, slot in zip(layout.tags, layout.slots, strict=True)
    ]


def store_if_unchanged(
    layout: ShardLayout, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
) -> ScriptCall:
    shard = layout.shard_of(keys.entry)
    tag = layout.tags[shard]
    physical = [tag + key for key in keys.fetch]  # the entry, then its tokens: one slot
    return layout.slots[shard], STORE, physical, [value, ttl_ms, lease, token_ttl_ms]


def set_value(layout: ShardLayout, key: str, value: bytes, ttl_ms: int) -> Routed:
    slot, name = _placed(layout, key)
    return slot, ("SET", name, value, "PX", ttl_ms)


def unlink(layout: ShardLayout, keys: Iterable[bytes]) -> list[Item]:
    """UNLINK commands for ``keys``: one per slot, since a multi-key command must stay in one."""
    by_slot: dict[int, list[bytes]] = {}
    for key in keys:
        by_slot.setdefault(layout.slot_of(key), []).append(key)
    return [(slot, ("UNLINK", *batch), NO_OPTIONS) for slot, batch in by_slot.items()]


def delete(layout: ShardLayout, keys: Sequence[str]) -> list[Item]:
    return unlink(layout, [layout.physical(key).encode() for key in keys])


def acquire_lock(layout: ShardLayout, key: str, owner: bytes, ttl_ms: int) -> Routed:
    slot, name = _placed(layout, key)
    return slot, ("SET", name, owner, "NX", "PX", ttl_ms)


def release_lock(layout: ShardLayout, key: str, owner: bytes) -> ScriptCall:
    slot, name = _placed(layout, key)
    return slot, RELEASE, [name], [owner]


def ttl_ms(layout: ShardLayout, key: str) -> Routed:
    slot, name = _placed(layout, key)
    return slot, ("PTTL", name)


def ttl_of(reply: Any) -> int | None:
    ttl = int(reply)
    return None if ttl == -2 else ttl


def scan(cursor: int, pattern: str) -> tuple[Any, ...]:
    """One SCAN step on one node."""
    return ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)


def logical_names(layout: ShardLayout, keys: Iterable[bytes]) -> dict[str, None]:
    """The logical names of the physical ``keys`` a SCAN returned, in order, once each."""
    return dict.fromkeys(layout.logical(key.decode("utf-8", "replace")) for key in keys)


class Sweep:
    """``delete_matching`` on one node, as a state machine the backend drives: SCAN for the
    keys that match (but for those under the reserved prefix), UNLINK them in batches."""

    __slots__ = ("_batch", "_keep", "_layout", "_pattern", "cursor", "deleted")

    def __init__(self, layout: ShardLayout, match: str, keep: str) -> None:
        self._layout = layout
        self._pattern = layout.match(match)
        self._keep = keep.encode()
        self._batch: list[bytes] = []
        self.cursor: int = 0
        self.deleted = 0

    def scan(self) -> tuple[Any, ...]:
        """The next SCAN command."""
        return scan(self.cursor, self._pattern)

    def scanned(self, reply: Any) -> list[Item]:
        """The UNLINK commands to send after a SCAN reply (none until a batch is full or the
        scan is over)."""
        self.cursor, keys = reply
        self._batch += [k for k in keys if not k[TAG_LENGTH:].startswith(self._keep)]
        if len(self._batch) >= UNLINK_BATCH or (self.cursor == 0 and self._batch):
            batch, self._batch = self._batch, []
            return unlink(self._layout, batch)
        return []

    def unlinked(self, counts: Iterable[Any]) -> None:
        self.deleted += sum(int(n) for n in counts)

    @property
    def done(self) -> bool:
        return self.cursor == 0
