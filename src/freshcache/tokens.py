"""Generation tokens and the classification of invalidation patterns (pure: no backend).

Every prefix of a key's segments has a token. An entry stores the tokens it was computed under;
it is valid only while they are all current. Invalidating a segment-aligned pattern replaces
one token, O(1) whatever the size of the keyspace. Tokens are unique forever (time + randomness),
so a token that disappears and is recreated can never make an old entry valid again.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import time
from collections.abc import Sequence

from freshcache.keys import (
    GLOB_CHARACTERS,
    RESERVED_PREFIX,
    SEGMENT_SEPARATOR,
    WILDCARD,
    short_repr,
)

TOKEN_SEGMENT = "__gen__"  # "{namespace}:__gen__:{prefix}" holds a prefix's token
LOCK_SEGMENT = "__lock__"  # "{namespace}:__lock__:{key}:{stamp digest}" is a stampede lock


def new_token() -> bytes:
    """A token never issued before: nanosecond clock and 32 random bits, 24 hex digits.

    The real clock on purpose, not a cache's injected one: uniqueness across processes and
    restarts is the point, and a test's frozen clock would make tokens repeat."""
    return f"{time.time_ns() & 0xFFFFFFFFFFFFFFFF:016x}{os.urandom(4).hex()}".encode()


def token_key(namespace: str, segments: Sequence[str]) -> str:
    """The key holding the token of the prefix ``segments`` (empty: the whole namespace)."""
    if not segments:
        return f"{namespace}{SEGMENT_SEPARATOR}{TOKEN_SEGMENT}"
    joined = SEGMENT_SEPARATOR.join(segments)
    return f"{namespace}{SEGMENT_SEPARATOR}{TOKEN_SEGMENT}{SEGMENT_SEPARATOR}{joined}"


def token_keys_for(namespace: str, segments: Sequence[str]) -> list[str]:
    """Token keys of every prefix of ``segments``, the namespace root first."""
    return [token_key(namespace, segments[:i]) for i in range(len(segments) + 1)]


class PatternKind(enum.Enum):
    GENERATION = "generation"  # "a:b:*" or "*": replace the token of prefix a:b
    ENTRY = "entry"  # no wildcard: one exact key, overwritten by a tombstone
    SCAN = "scan"  # any other glob: SCAN + UNLINK, O(keyspace)


@dataclasses.dataclass(frozen=True, slots=True)
class PatternPlan:
    pattern: str
    kind: PatternKind
    segments: tuple[str, ...]  # GENERATION: the prefix; ENTRY: the key's segments; SCAN: ()

    @property
    def label(self) -> str:
        """The prefix this invalidation is counted under in the stats."""
        if self.kind is PatternKind.GENERATION:
            return SEGMENT_SEPARATOR.join(self.segments) or WILDCARD
        return self.pattern


#: Patterns longer than this are classified every time instead of memoised, so the memo
#: holds at most 4096 x 1 KiB of pattern text.
_MEMO_PATTERN_LENGTH = 1024


def classify(pattern: str) -> PatternPlan:
    """Decide how ``pattern`` (relative to the namespace) is invalidated.

    Raises ``ValueError`` naming the problem for an empty pattern, an empty segment, or an
    unbalanced character class.
    """
    if isinstance(pattern, str) and len(pattern) <= _MEMO_PATTERN_LENGTH:
        return _classify_memo(pattern)
    return _classify(pattern)


@functools.lru_cache(maxsize=4096)
def _classify_memo(pattern: str) -> PatternPlan:
    return _classify(pattern)


def _classify(pattern: str) -> PatternPlan:
    if not isinstance(pattern, str):
        raise TypeError(
            "freshcache: an invalidation pattern must be a string, got "
            f"{type(pattern).__qualname__}"
        )
    if not pattern:
        raise ValueError("freshcache: empty invalidation pattern")
    segments = pattern.split(SEGMENT_SEPARATOR)
    if any(not s for s in segments):
        raise ValueError(
            f"freshcache: invalidation pattern {short_repr(pattern)} has an empty segment"
        )
    if pattern.count("[") != pattern.count("]"):
        raise ValueError(
            f"freshcache: invalidation pattern {short_repr(pattern)} has an unbalanced '['"
        )
    if segments[0].startswith(RESERVED_PREFIX):
        raise ValueError(
            f"freshcache: invalidation pattern {short_repr(pattern)}: first segments starting with "
            f"{RESERVED_PREFIX!r} are freshcache's own keys"
        )
    head, last = segments[:-1], segments[-1]
    head_literal = not any(GLOB_CHARACTERS.intersection(s) for s in head)
    if last == WILDCARD and head_literal:
        return PatternPlan(pattern, PatternKind.GENERATION, tuple(head))
    if head_literal and not GLOB_CHARACTERS.intersection(last):
        return PatternPlan(pattern, PatternKind.ENTRY, tuple(segments))
    return PatternPlan(pattern, PatternKind.SCAN, ())
