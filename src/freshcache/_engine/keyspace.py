"""Every key string the cache writes or reads, derived in one place.

``{namespace}:{prefix}:{function}:{args}`` is an entry; ``{namespace}:__gen__[:{prefix}]`` the
generation token of a prefix; ``{namespace}:__lock__:{relative key}:{digest}`` a stampede lock.
A call's keys are computed once into a ``Located`` (memoised by ``FunctionSpec``), and the
backends receive them as ``EntryKeys``: nothing downstream splits or re-joins key text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from freshcache import entry as envelope
from freshcache.backends.base import EntryKeys
from freshcache.keys import SEGMENT_SEPARATOR
from freshcache.tokens import LOCK_SEGMENT, token_key, token_keys_for


@dataclasses.dataclass(frozen=True, slots=True)
class Located(EntryKeys):
    """One call's place in the cache: the ``EntryKeys`` a backend needs, and the entry key
    relative to the namespace (what ``func.invalidate()`` sends as an exact-key pattern)."""

    relative: str


class KeySpace:
    """The key arithmetic of one namespace."""

    __slots__ = ("namespace", "reserved_prefix")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        #: Where freshcache's own keys (tokens, locks) live: never a user's entry or pattern.
        self.reserved_prefix = f"{namespace}{SEGMENT_SEPARATOR}__"

    def key(self, relative: str) -> str:
        """The stored name of a key or glob written relative to the namespace."""
        return f"{self.namespace}{SEGMENT_SEPARATOR}{relative}"

    def absolute(self, key: str) -> str:
        """``key`` as stored, whether it was given with or without the namespace."""
        if key.startswith(self.namespace + SEGMENT_SEPARATOR):
            return key
        return self.key(key)

    def token_keys(self, segments: Sequence[str]) -> tuple[str, ...]:
        """The token keys of every prefix of ``segments``, the namespace root first."""
        return tuple(token_keys_for(self.namespace, segments))

    def token_key(self, segments: Sequence[str]) -> str:
        """The token key of the prefix ``segments`` (empty: the whole namespace)."""
        return token_key(self.namespace, segments)

    def located(self, relative: str, token_keys: tuple[str, ...]) -> Located:
        key = self.key(relative)
        return Located(key, token_keys, (key, *token_keys), relative)

    def lock_key(self, loc: Located, stamp: bytes) -> str:
        """The lock of one computation: the entry and the tokens its reader saw."""
        digest = envelope.make_stamp([stamp]).hex()[-16:]
        return SEGMENT_SEPARATOR.join((self.namespace, LOCK_SEGMENT, loc.relative, digest))

    def stored_entry(self, key: str, token_count: int) -> EntryKeys:
        """For tools that start from a stored key's text (``Cache.inspect``): the keys of the
        entry at ``key`` whose envelope carries ``token_count`` tokens. The one place that
        reads segments back out of a key, because a tool's user types the key."""
        absolute = self.absolute(key)
        relative = absolute[len(self.namespace) + 1 :].split(SEGMENT_SEPARATOR)
        return EntryKeys.of(absolute, self.token_keys(relative[: token_count - 1]))
