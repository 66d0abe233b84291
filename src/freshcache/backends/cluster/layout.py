"""Where a logical key is stored on the cluster: its hash tag (pure, no I/O)."""

from __future__ import annotations

import functools
import zlib

from redis.crc import key_slot

CLUSTER_SLOTS = 16384
DEFAULT_SHARDS = 16
#: An invalidation writes one token copy per shard: beyond this it stops being cheap.
MAX_SHARDS = 1024
TAG_PREFIX = "fc:"
TAG_DIGITS = 4
#: Matches every tag and nothing more (tags have a fixed width), so ``TAG_GLOB + pattern``
#: matches exactly the physical keys whose logical key matches ``pattern``.
TAG_GLOB = "{" + TAG_PREFIX + "?" * TAG_DIGITS + "}"
TAG_LENGTH = len(TAG_GLOB)


@functools.cache
def _spread_tags(shards: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``shards`` tags, tag ``i`` hashing into the ``i``-th of ``shards`` equal ranges of the
    slot space. Deterministic: every process derives the same tags from the same count."""
    tags: list[str] = [""] * shards
    slots = [0] * shards
    missing = shards
    for n in range(16**TAG_DIGITS):
        body = f"{TAG_PREFIX}{n:0{TAG_DIGITS}x}"
        slot = key_slot(body.encode())
        bucket = slot * shards // CLUSTER_SLOTS
        if not tags[bucket]:
            tags[bucket], slots[bucket] = "{" + body + "}", slot
            missing -= 1
            if not missing:
                return tuple(tags), tuple(slots)
    raise ValueError(f"freshcache: no {TAG_DIGITS}-digit tags cover {shards} slot ranges")


class ShardLayout:
    """Where a logical key is stored: ``tags[shard_of(route)] + key``.

    Pure and deterministic: processes that share a namespace must use the same ``shards``,
    or one's invalidations would not reach the other's token copies (docs/cluster.md).
    """

    __slots__ = ("_slot_by_tag", "shards", "slots", "tags")

    def __init__(self, shards: int = DEFAULT_SHARDS) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"freshcache: shards must be an integer in 1..{MAX_SHARDS}")
        self.shards = shards
        self.tags, self.slots = _spread_tags(shards)
        self._slot_by_tag = {
            tag.encode(): slot for tag, slot in zip(self.tags, self.slots, strict=True)
        }

    def shard_of(self, route: str) -> int:
        return zlib.crc32(route.encode()) % self.shards

    def physical(self, key: str, route: str | None = None) -> str:
        """The stored name of ``key`` in the shard of ``route`` (default: its own)."""
        return self.tags[self.shard_of(key if route is None else route)] + key

    def copies(self, key: str) -> list[str]:
        """``key`` in every shard: where a token's copies live."""
        return [tag + key for tag in self.tags]

    @staticmethod
    def match(pattern: str) -> str:
        """The SCAN pattern of the physical keys whose logical key matches ``pattern``."""
        return TAG_GLOB + pattern

    @staticmethod
    def logical(physical: str) -> str:
        return physical[TAG_LENGTH:] if physical.startswith("{" + TAG_PREFIX) else physical

    def slot_of(self, physical: bytes) -> int:
        slot = self._slot_by_tag.get(physical[:TAG_LENGTH])
        # A key under another shard count's tag (left over after a change of ``shards``).
        return slot if slot is not None else key_slot(physical)
