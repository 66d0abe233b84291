"""``redis+cluster://`` and ``rediss+cluster://``: freshcache on Redis Cluster (docs/cluster.md).

Layout. Every key is stored under a hash tag chosen by a *route*: ``{fc:XXXX}`` + the logical
key, where the tag is one of ``shards`` tags (default 16, ``?shards=N`` in the URL) and the
route of an entry, of the tokens it is checked against, of its tombstone and of its lease is the
entry key itself. So an entry and its token keys share one slot, and the hit path is one MGET on
one node. Each shard keeps its own copy of a prefix's token; ``bump`` rewrites the copies of
every shard (one pipeline per primary, all in parallel), so an invalidation costs O(shards)
commands, whatever the size of the keyspace. The tags are spread evenly over the slot space, so on a
cluster with the default slot assignment the shards spread evenly over the primaries.

Routing. The backend reads the slot map with CLUSTER SLOTS (and each primary's live replicas
with CLUSTER NODES, in the same round trip) and talks to each primary through
its own redis-py client (a bounded pool that waits, no redis-py retries: the same connection
policy as ``backends/redis``). It follows MOVED (patching the slot and refreshing the map) and ASK
(ASKING and the command pipelined on one connection) itself, at most ``MAX_REDIRECTS`` times.
redis-py's ``RedisCluster`` clients were measured and not used: the asyncio one sends ASKING and
the redirected command on different pooled connections, so a key in a migrating slot fails
after 16 round trips ("TTL exhausted"); on CLUSTERDOWN both sleep 250 ms inside the call; the
asyncio one raises past its per-node connection cap instead of waiting (docs/cluster.md).

Durability. Redis replicates asynchronously: a bump acknowledged by a primary that dies before
its replica received it would be undone by the failover, and the entries it invalidated would
be served again. So every invalidating write (bump, tombstone, UNLINK) is pipelined with WAIT
for the primary's replicas (``?wait_replicas=all``, the default; a number, or 0 to opt out);
if they do not acknowledge in time the call fails, and the Cache keeps and replays it.

Failures. A connection error, a timeout, CLUSTERDOWN or a redirect mark the map stale; the next
call refreshes it first (one refresh at a time, at most one per ``REFRESH_INTERVAL``; a caller
waits for it at most twice the call timeout, the first map a connect longer), so the calls
after a failover reach the promoted replica. Nothing is retried inside a call beyond the
redirects: the error leaves as ``BackendError`` and the Cache's breaker and pending
invalidations handle it.

Modules. ``layout`` (tags, where a key lives), ``settings`` (the URL), ``slotmap`` (CLUSTER
SLOTS and CLUSTER NODES replies), ``errors`` (what redis-py's exceptions mean here),
``topology`` (what one side knows and when it reads the map again), ``commands`` (what each
method sends), ``routing`` (how a call travels: pipelines, replies, redirections), and the two
faces that do the I/O: ``aio`` (``AsyncClusterBackend``) and ``sync`` (``SyncClusterBackend``).
"""

from __future__ import annotations

# ``X as X``: names the one-module version had, still importable from here (tests and tools
# import some of them), without widening ``__all__``.
from freshcache.backends.cluster.aio import AsyncClusterBackend
from freshcache.backends.cluster.layout import CLUSTER_SLOTS as CLUSTER_SLOTS
from freshcache.backends.cluster.layout import DEFAULT_SHARDS, MAX_SHARDS, ShardLayout
from freshcache.backends.cluster.layout import TAG_DIGITS as TAG_DIGITS
from freshcache.backends.cluster.layout import TAG_GLOB as TAG_GLOB
from freshcache.backends.cluster.layout import TAG_LENGTH as TAG_LENGTH
from freshcache.backends.cluster.layout import TAG_PREFIX as TAG_PREFIX
from freshcache.backends.cluster.settings import ClusterSettings, parse_cluster_url
from freshcache.backends.cluster.settings import split_address as split_address
from freshcache.backends.cluster.slotmap import SlotMap, live_replicas, parse_cluster_slots
from freshcache.backends.cluster.sync import SyncClusterBackend
from freshcache.backends.cluster.topology import MAP_MAX_AGE as MAP_MAX_AGE
from freshcache.backends.cluster.topology import MAX_REDIRECTS as MAX_REDIRECTS
from freshcache.backends.cluster.topology import REFRESH_INTERVAL as REFRESH_INTERVAL
from freshcache.backends.cluster.topology import SUSPECT_SECONDS as SUSPECT_SECONDS

__all__ = [
    "DEFAULT_SHARDS",
    "MAX_SHARDS",
    "AsyncClusterBackend",
    "ClusterSettings",
    "ShardLayout",
    "SlotMap",
    "SyncClusterBackend",
    "live_replicas",
    "parse_cluster_slots",
    "parse_cluster_url",
]
