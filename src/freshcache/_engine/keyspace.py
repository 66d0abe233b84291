"""Every key string the cache writes or reads, derived in one place.

``{namespace}:{prefix}:{function}:{args}`` is an entry; ``{namespace}:__gen__[:{prefix}]`` the
generation token of a prefix; ``{namespace}:__key__:{relative key}`` the token of one entry (what
an exact-key invalidation replaces); ``{namespace}:__lock__:{relative key}:{digest}`` a stampede
lock; ``{namespace}:__server__`` the identity of the Redis server the namespace was written on.
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

#: ``{namespace}:__key__:{relative key}`` holds the token of one entry. An exact-key
#: invalidation replaces it; like every token, its absence means "invalid", so an eviction or
#: a hand-deleted key can never let a value computed before the invalidation through.
ENTRY_TOKEN_SEGMENT = "__key__"
#: ``{namespace}:__server__`` holds the identity of the server the namespace was last written
#: on; a server that answers with another identity holds data of another history.
SERVER_SEGMENT = "__server__"


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

    def entry_token_key(self, relative: str) -> str:
        """The token of the one entry at ``relative`` (read with the prefix tokens)."""
        return SEGMENT_SEPARATOR.join((self.namespace, ENTRY_TOKEN_SEGMENT, relative))

    @property
    def server_key(self) -> str:
        return f"{self.namespace}{SEGMENT_SEPARATOR}{SERVER_SEGMENT}"

    @property
    def server_claim_key(self) -> str:
        """The lock one process holds while it starts a namespace's generation on a server."""
        return SEGMENT_SEPARATOR.join((self.namespace, LOCK_SEGMENT, SERVER_SEGMENT))

    def located(self, relative: str, token_keys: tuple[str, ...]) -> Located:
        """The keys of the entry at ``relative``: its prefixes' tokens, then its own token."""
        key = self.key(relative)
        tokens = (*token_keys, self.entry_token_key(relative))
        return Located(key, tokens, (key, *tokens), relative)

    def lock_key(self, loc: Located, stamp: bytes) -> str:
        """The lock of one computation: the entry and the tokens its reader saw."""
        digest = envelope.make_stamp([stamp]).hex()[-16:]
        return SEGMENT_SEPARATOR.join((self.namespace, LOCK_SEGMENT, loc.relative, digest))

    def stored_entry(self, key: str, token_count: int) -> EntryKeys:
        """For tools that start from a stored key's text (``Cache.inspect``): the keys of the
        entry at ``key`` whose envelope carries ``token_count`` tokens. The one place that
        reads segments back out of a key, because a tool's user types the key."""
        absolute = self.absolute(key)
        relative = absolute[len(self.namespace) + 1 :]
        segments = relative.split(SEGMENT_SEPARATOR)
        # The prefix tokens (the root, then one per segment), then the entry's own token.
        prefix_tokens = self.token_keys(segments[: max(token_count - 2, 0)])
        return EntryKeys.of(absolute, (*prefix_tokens, self.entry_token_key(relative)))
