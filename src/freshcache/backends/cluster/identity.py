"""Which dataset history a Redis Cluster holds: the identities of its primaries (pure).

Every primary has its own history: it can restart from an older snapshot, or be replaced by a
replica that missed some bumps (token copies live on every shard, so any shard can bring old
tokens back). Each of those gives that primary a new ``run_id:master_replid``, so the sorted
set of the serving primaries' identities changes; the engine compares it with the one stored
in the namespace, as for one server, and starts a fresh generation (the root token replaced in
every shard) when it differs. A change of topology (a primary added or replaced) changes it
too: one more fresh generation, never a stale read.
"""

from __future__ import annotations

from collections.abc import Iterable

from freshcache.backends.redis.identity import identity_of

#: The INFO sections one primary's identity is read from.
SECTIONS = (("INFO", "server"), ("INFO", "replication"))


def primary_identity(server: object, replication: object) -> bytes:
    """One primary's ``run_id:master_replid`` from its two INFO answers."""
    return identity_of(server, replication)  # type: ignore[arg-type]


def cluster_identity(primaries: Iterable[bytes]) -> bytes:
    """The cluster's identity: every serving primary's, sorted (the map's order is not)."""
    return b",".join(sorted(set(primaries)))
