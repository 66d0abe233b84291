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
policy as ``redis.py``). It follows MOVED (patching the slot and refreshing the map) and ASK
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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
import redis.exceptions
from redis.backoff import NoBackoff
from redis.crc import key_slot

from freshcache.backends.base import BackendError
from freshcache.backends.redis import (
    RELEASE_LOCK,
    SCAN_COUNT,
    STORE_IF_UNCHANGED,
    UNLINK_BATCH,
    pool_options,
)

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

log = logging.getLogger("freshcache")

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
#: MOVED then ASK (a slot that moved and is being migrated again) is the longest legitimate
#: chain; anything longer is a cluster in flux, and the breaker is the better judge of it.
MAX_REDIRECTS = 2
#: At most one topology refresh per interval, however many calls fail meanwhile.
REFRESH_INTERVAL = 0.05
#: Invalidations read the slot map again when it is older than this (seconds).
MAP_MAX_AGE = 30.0
#: A node that failed is asked for the topology last, for this long.
SUSPECT_SECONDS = 10.0

_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)
#: Replies that say the slot map we route by may be out of date.
_TOPOLOGY_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,  # also MASTERDOWN
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    OSError,
    asyncio.TimeoutError,
)
#: What a malformed CLUSTER SLOTS reply raises while it is parsed.
_MALFORMED = (ValueError, TypeError, IndexError)
_NO_OPTIONS: dict[str, Any] = {}
_SET_GET = {"get": True}  # redis-py turns a SET reply into a bool unless told GET was asked


# ============================================================================ layout (pure)


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


# ============================================================================ URL


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSettings:
    """A parsed ``redis+cluster://`` URL."""

    seeds: tuple[str, ...]  # "host:port" of the nodes to ask for the topology first
    tls: bool
    userinfo: str  # "user:password@" as written (still quoted), or ""
    query: str  # options for every node's redis-py pool, without freshcache's own
    shards: int
    wait_replicas: int | None = None  # replicas that must acknowledge an invalidation; None: all

    def node_url(self, address: str) -> str:
        host, port = split_address(address)
        if ":" in host:
            host = f"[{host}]"
        query = f"?{self.query}" if self.query else ""
        return f"{'rediss' if self.tls else 'redis'}://{self.userinfo}{host}:{port}/0{query}"


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _address(host: str, port: int) -> str:
    return f"{host}:{port}"


def _redacted(url: str) -> str:
    """``url`` for an error message: the password is not the reader's business."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def parse_cluster_url(url: str) -> ClusterSettings:
    """``redis+cluster://[user:password@]host:port[,host:port...][/0][?shards=N&...]``.

    ``shards`` (default 16) and ``wait_replicas`` (``all``, the default, or a number) are
    freshcache's; every other query option is redis-py's, applied to each node. Raises
    ``ValueError`` naming the problem.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("redis+cluster", "rediss+cluster"):
        raise ValueError(
            f"freshcache: {_redacted(url)!r} is not a redis+cluster:// or rediss+cluster:// URL"
        )
    parts = urlsplit("//" + rest)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    seeds: list[str] = []
    for item in hosts.split(","):
        host, port = _host_port(item.strip(), url)
        seeds.append(_address(host, port))
    if parts.path not in ("", "/", "/0"):
        raise ValueError(
            f"freshcache: {_redacted(url)!r} names database {parts.path.strip('/')!r}; "
            "Redis Cluster has only database 0"
        )
    shards = DEFAULT_SHARDS
    wait_replicas: int | None = None
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "shards":
            try:
                shards = int(value)
            except ValueError:
                shards = 0
            if not 1 <= shards <= MAX_SHARDS:
                raise ValueError(
                    f"freshcache: shards={value!r} in {_redacted(url)!r}: "
                    f"use an integer in 1..{MAX_SHARDS}"
                )
        elif name == "wait_replicas":
            wait_replicas = _wait_replicas(value, url)
        elif name == "db":
            if value != "0":
                raise ValueError(
                    f"freshcache: db={value!r} in {_redacted(url)!r}: Redis Cluster has only 0"
                )
        else:
            passed.append((name, value))
    return ClusterSettings(
        seeds=tuple(dict.fromkeys(seeds)),
        tls=scheme.lower() == "rediss+cluster",
        userinfo=f"{userinfo}@" if userinfo else "",
        query=urlencode(passed),
        shards=shards,
        wait_replicas=wait_replicas,
    )


def _wait_replicas(value: str, url: str) -> int | None:
    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(
            f"freshcache: wait_replicas={value!r} in {_redacted(url)!r}: "
            "use 'all' or a number of replicas"
        )
    return count


def _host_port(item: str, url: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    if not host:
        raise ValueError(f"freshcache: empty host in {_redacted(url)!r}")
    try:
        port = int(port_text) if port_text else 6379
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ValueError(f"freshcache: bad port {port_text!r} for {host!r} in {_redacted(url)!r}")
    return host, port


# ============================================================================ slot map


@dataclasses.dataclass(frozen=True, slots=True)
class SlotMap:
    """Which primary serves each slot (``None``: nobody), as one node answered CLUSTER SLOTS."""

    owners: tuple[str | None, ...]
    primaries: tuple[str, ...]
    replicas: tuple[str, ...]
    #: Live replicas of each primary (CLUSTER SLOTS leaves failed replicas out).
    replica_counts: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def moved(self, slot: int, address: str) -> SlotMap:
        """This map with ``slot`` served by ``address`` (a MOVED reply, until the refresh)."""
        owners = list(self.owners)
        owners[slot] = address
        primaries = self.primaries if address in self.primaries else (*self.primaries, address)
        return SlotMap(tuple(owners), primaries, self.replicas, self.replica_counts)

    def serving(self) -> tuple[str, ...]:
        """The primaries that serve at least one slot (where SCAN must run)."""
        return tuple(dict.fromkeys(owner for owner in self.owners if owner is not None))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def parse_cluster_slots(reply: Any, asked_host: str, nodes: Any = None) -> SlotMap:
    """A CLUSTER SLOTS reply: ``[[start, end, [host, port, id, ...], replica...], ...]``.
    An empty or ``?`` host means "the address you asked" (a node that does not know its IP).

    ``nodes``, the CLUSTER NODES reply of the same node, counts each primary's replicas: CLUSTER
    SLOTS leaves out a replica whose replication offset is still 0 (one that has received no
    write yet), so on a fresh cluster it lists none, and WAIT would wait for nobody."""
    owners: list[str | None] = [None] * CLUSTER_SLOTS
    primaries: dict[str, None] = {}
    replicas: dict[str, None] = {}
    counts: dict[str, int] = {}
    ids: dict[str, str] = {}
    for entry in reply or ():
        start, end = int(entry[0]), int(entry[1])
        addresses = []
        for node in entry[2:]:
            host = _text(node[0])
            addresses.append(_address(host if host not in ("", "?") else asked_host, int(node[1])))
        if not addresses or not 0 <= start <= end < CLUSTER_SLOTS:
            raise ValueError(f"malformed CLUSTER SLOTS entry {entry!r}")
        primaries[addresses[0]] = None
        replicas.update(dict.fromkeys(addresses[1:]))
        counts[addresses[0]] = max(counts.get(addresses[0], 0), len(addresses) - 1)
        if len(entry[2]) > 2:
            ids[addresses[0]] = _text(entry[2][2])
        owners[start : end + 1] = [addresses[0]] * (end - start + 1)
    if not primaries:
        raise ValueError("CLUSTER SLOTS lists no slots (a node that is not part of a cluster yet)")
    if nodes is not None:
        # By node id: CLUSTER SLOTS may announce hostnames where CLUSTER NODES shows IPs.
        live = live_replicas(_text(nodes))
        counts = {address: live.get(ids.get(address, ""), 0) for address in primaries}
    return SlotMap(tuple(owners), tuple(primaries), tuple(replicas), counts)


#: A replica in one of these states cannot be promoted (the cluster cannot reach it), so an
#: invalidation does not wait for it.
_UNREACHABLE = frozenset({"fail", "fail?", "noaddr", "handshake"})


def live_replicas(cluster_nodes: str) -> dict[str, int]:
    """Replicas of each primary (by node id) that the cluster can reach, from CLUSTER NODES:
    ``<id> <ip:port@cport> <flags> <primary id> ...``."""
    counts: dict[str, int] = {}
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if flags & {"slave", "replica"} and not flags & _UNREACHABLE:
            counts[fields[3]] = counts.get(fields[3], 0) + 1
    return counts


# ============================================================================ errors


def _classify(exc: BaseException) -> BackendError:
    if isinstance(exc, redis.exceptions.TimeoutError | asyncio.TimeoutError | TimeoutError):
        return BackendError("timeout", str(exc) or type(exc).__name__)
    if isinstance(exc, redis.exceptions.ConnectionError | OSError):
        return BackendError("connection", str(exc) or type(exc).__name__)
    return BackendError("server", f"{type(exc).__name__}: {exc}")


def _redirect_target(exc: redis.exceptions.AskError, current: str) -> str:
    # A node that does not know its own IP answers "MOVED 3999 :6381": the host we asked.
    host = exc.host or split_address(current)[0]
    return _address(host, int(exc.port))


class _Topology:
    """What one side (a loop, or the threads of the sync backend) knows about the cluster.

    Updates are single assignments of immutable values, so concurrent threads can at worst
    lose a MOVED patch or a suspect mark: the map is then stale a little longer, never wrong
    for long (the next MOVED or error marks it stale again).
    """

    def __init__(
        self,
        seeds: Sequence[str],
        clock: Callable[[], float],
        wait_replicas: int | None = None,
        wait_ms: int = 50,
    ) -> None:
        self.seeds = tuple(seeds)
        self.clock = clock
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms
        self.map: SlotMap | None = None
        self.owners: tuple[str | None, ...] | None = None  # the map's, read on the hot path
        self.stale = True  # refresh before the next call
        self.last_refresh = float("-inf")
        self.installed_at = float("-inf")
        self.suspects: dict[str, float] = {}
        self.refreshes = 0

    def install(self, slot_map: SlotMap) -> None:
        changed = self.map is not None and self.map.owners != slot_map.owners
        self.map, self.owners, self.stale = slot_map, slot_map.owners, False
        self.installed_at = self.clock()
        self.refreshes += 1
        if changed:
            log.info(
                "freshcache: Redis Cluster topology changed; primaries now %s",
                ", ".join(slot_map.serving()),
            )

    def aged(self) -> bool:
        """Before an invalidation: is the map too old to trust its replica counts? (Replicas
        added since would not be waited for; errors refresh it, but an addition is silent.)"""
        if self.clock() - self.installed_at > MAP_MAX_AGE:
            self.stale = True
        return self.stale

    def refresh_due(self) -> bool:
        # Also without a map: when no node answers, each call must not try them all again.
        return self.clock() - self.last_refresh >= REFRESH_INTERVAL

    def owner(self, slot: int) -> str:
        owners = self.owners
        if owners is None:
            raise BackendError("connection", "no Redis Cluster node answered CLUSTER SLOTS yet")
        address = owners[slot]
        if address is None:
            self.stale = True
            raise BackendError("server", f"slot {slot} is not served by any node")
        return address

    def moved(self, exc: redis.exceptions.AskError, current: str) -> str:
        target = _redirect_target(exc, current)
        if self.map is not None and 0 <= exc.slot_id < CLUSTER_SLOTS:
            self.map = self.map.moved(exc.slot_id, target)
            self.owners = self.map.owners
        self.stale = True  # one slot moved: others may have too (a failover, a resharding)
        return target

    def failed(self, exc: BaseException, address: str | None) -> BackendError:
        if isinstance(exc, _TOPOLOGY_ERRORS):
            self.stale = True
            if address is not None and not isinstance(exc, redis.exceptions.ResponseError):
                self.suspects[address] = self.clock()
        return _classify(exc)

    def acks(self, address: str) -> int:
        """How many replicas of ``address`` must acknowledge an invalidation before it counts
        as done: Redis replicates asynchronously, and a failover that promotes a replica which
        missed a bump would bring the entries it invalidated back to life."""
        if self.map is None:
            return 0
        # A node we do not know yet (a MOVED target before the refresh) counts as replica-less.
        live = self.map.replica_counts.get(address, 0)
        return live if self.wait_replicas is None else min(live, self.wait_replicas)

    def check_acks(self, address: str, reply: Any, wanted: int) -> None:
        if isinstance(reply, int) and reply >= wanted:
            return
        self.stale = True  # a replica that does not answer may be gone: read the map again
        if isinstance(reply, BaseException):
            raise self.failed(reply, address)
        raise BackendError(
            "timeout",
            f"{address}: {reply} of {wanted} replicas acknowledged the invalidation within "
            f"{self.wait_ms} ms: a failover now could undo it",
        )

    def candidates(self) -> list[str]:
        """Whom to ask for the topology: healthy primaries, replicas, the URL's seeds, then
        the nodes that failed lately (a dead node may cost a connect timeout)."""
        now = self.clock()
        known: list[str] = []
        if self.map is not None:
            primaries = list(self.map.serving())
            random.shuffle(primaries)  # many clients should not all ask the same node
            known += primaries + list(self.map.replicas)
        known += self.seeds
        ordered = list(dict.fromkeys(known))
        fresh = [a for a in ordered if now - self.suspects.get(a, float("-inf")) > SUSPECT_SECONDS]
        return fresh + [a for a in ordered if a not in fresh]


@dataclasses.dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> _Script:
        # SHA-1 because that is the name Redis gives a script (EVALSHA), not for security.
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


_STORE = _Script.of(STORE_IF_UNCHANGED)
_RELEASE = _Script.of(RELEASE_LOCK)

#: (slot, command, redis-py options): one command of a batch.
_Item = tuple[int, tuple[Any, ...], dict[str, Any]]


def _group(items: Iterable[_Item], topology: _Topology) -> dict[str, list[tuple[int, _Item]]]:
    """Items by the primary that serves them, each with its index in ``items``."""
    groups: dict[str, list[tuple[int, _Item]]] = {}
    for index, item in enumerate(items):
        groups.setdefault(topology.owner(item[0]), []).append((index, item))
    return groups


def _slot_map(slots: Any, nodes: Any, address: str) -> SlotMap:
    """The map from one node's CLUSTER SLOTS and CLUSTER NODES replies (the latter may be
    refused, e.g. renamed on a managed service: replicas are then counted from the former)."""
    if isinstance(slots, BaseException):
        raise slots
    if isinstance(nodes, BaseException):
        log.debug("freshcache: CLUSTER NODES failed on %s (%s); counting replicas from CLUSTER "
                  "SLOTS", address, nodes)  # fmt: skip
        nodes = None
    return parse_cluster_slots(slots, split_address(address)[0], nodes)


def _unlink_items(layout: ShardLayout, keys: Iterable[bytes]) -> list[_Item]:
    """UNLINK commands for ``keys``: one per slot, since a multi-key command must stay in one."""
    by_slot: dict[int, list[bytes]] = {}
    for key in keys:
        by_slot.setdefault(layout.slot_of(key), []).append(key)
    return [(slot, ("UNLINK", *batch), _NO_OPTIONS) for slot, batch in by_slot.items()]


def _validate_options(settings: ClusterSettings, pool: Any) -> None:
    """Build (not connect) one connection, so that a bad URL option fails now, by name, and not
    as a TypeError inside redis-py on the first call."""
    try:
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"freshcache: bad option in cluster URL ({settings.query}): {exc}"
        ) from None


# ============================================================================ asyncio


async def _ask(
    client: redis.asyncio.Redis, command: tuple[Any, ...], options: dict[str, Any]
) -> Any:
    return await client.execute_command(*command, **options)  # type: ignore[no-untyped-call]


class _Gate:
    """At most ``size`` commands in flight to one node; callers beyond that *wait* (at most
    ``wait`` seconds) instead of failing, as DESIGN.md 5b asks. An uncontended semaphore costs
    next to nothing on the hit path."""

    __slots__ = ("_semaphore", "_wait")

    def __init__(self, size: int, wait: float) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self._wait = wait

    async def __aenter__(self) -> None:
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # a free slot: returns without suspending
            return
        try:
            async with asyncio.timeout(self._wait):
                await semaphore.acquire()
        except TimeoutError:
            raise BackendError(
                "timeout", f"no free connection within {self._wait}s (max_connections reached)"
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        self._semaphore.release()


@dataclasses.dataclass(slots=True)
class _AsyncNode:
    client: redis.asyncio.Redis
    gate: _Gate


class _AsyncSide(_Topology):
    """The asyncio side of one event loop: clients and locks belong to the loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        seeds: Sequence[str],
        clock: Callable[[], float],
        wait_replicas: int | None,
        wait_ms: int,
    ) -> None:
        super().__init__(seeds, clock, wait_replicas, wait_ms)
        self.loop = loop
        self.nodes: dict[str, _AsyncNode] = {}
        self.refreshing: asyncio.Task[None] | None = None


class AsyncClusterBackend:
    """The asyncio backend (``AsyncBackend``). A client belongs to one event loop; a new loop
    gets new clients (and reads the slot map again)."""

    kind = "cluster"

    def __init__(
        self,
        url: str,
        timeout: float,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.settings = parse_cluster_url(url)
        self.layout = ShardLayout(self.settings.shards)
        self._options = pool_options(timeout, max_connections, pool_timeout, connect_timeout)
        del self._options["timeout"]  # the wait for a free connection is _Gate's job here
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        # How long a caller waits for a refresh of the map: without a map nothing can be
        # routed, so the first one gets a connect and a reply; later ones a reply or two.
        self._first_wait = float(self._options["socket_connect_timeout"]) + timeout
        self._refresh_wait = 2 * timeout
        # WAIT's own deadline, a little inside the socket's (the server checks it on its cron,
        # 10 Hz by default, so the socket may still give up first: a timeout either way).
        self._wait_ms = max(1, int(timeout * 800))
        self._clock = clock
        self._side: _AsyncSide | None = None
        _validate_options(self.settings, self._pool(self.settings.seeds[0]))

    # -- plumbing

    def _pool(self, address: str) -> redis.asyncio.ConnectionPool:
        pool = redis.asyncio.ConnectionPool.from_url(
            self.settings.node_url(address), **self._options
        )
        pool.connection_kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
        return pool

    def _current(self) -> _AsyncSide:
        loop = asyncio.get_running_loop()
        side = self._side
        if side is None or side.loop is not loop:
            # Like redis.py: the old loop's clients are left to it (they cannot be awaited here).
            side = self._side = _AsyncSide(
                loop, self.settings.seeds, self._clock, self.settings.wait_replicas, self._wait_ms
            )
        return side

    def _node(self, side: _AsyncSide, address: str) -> _AsyncNode:
        node = side.nodes.get(address)
        if node is None:
            # Kept until aclose(), also for nodes that stop serving: a call may still hold it.
            client = redis.asyncio.Redis.from_pool(self._pool(address))
            node = side.nodes[address] = _AsyncNode(
                client, _Gate(self._max_connections, self._pool_timeout)
            )
        return node

    @property
    def topology(self) -> _Topology:
        """What the running loop's side knows (for tests and tools)."""
        return self._current()

    async def _ready(self, durable: bool = False) -> _AsyncSide:
        side = self._side
        if side is None or side.loop is not asyncio.get_running_loop():
            side = self._current()
        if side.stale or (durable and side.aged()):
            await self._refresh_soon(side)
        return side

    async def _refresh_soon(self, side: _AsyncSide) -> None:
        task = side.refreshing
        if task is None:
            if not side.refresh_due():
                return  # refreshed a moment ago: route by that map
            task = side.refreshing = asyncio.create_task(self._refresh(side))
        # Shielded: a caller that gives up (or is cancelled) must not cancel it for the others.
        wait = self._refresh_wait if side.owners is not None else self._first_wait
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            pass  # route by the map we have; the refresh goes on without us
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.cancelled() or (current is not None and current.cancelling()):
                raise  # we are the ones being cancelled
            # aclose() cancelled the refresh: this call goes on and fails or succeeds on its own

    async def _refresh(self, side: _AsyncSide) -> None:
        side.last_refresh = side.clock()
        last: BaseException | None = None
        try:
            for address in side.candidates():
                node = self._node(side, address)
                try:
                    async with node.gate, node.client.pipeline(transaction=False) as pipe:
                        pipe.execute_command("CLUSTER", "SLOTS")
                        pipe.execute_command("CLUSTER", "NODES")
                        slots, nodes = await pipe.execute(raise_on_error=False)
                    side.install(_slot_map(slots, nodes, address))
                    return
                except (*_ERRORS, BackendError, *_MALFORMED) as exc:
                    # Whatever one node does wrong, ask the next: this task must never fail
                    # the callers that wait for it.
                    last = exc
                    if not isinstance(exc, (redis.exceptions.ResponseError, *_MALFORMED)):
                        side.suspects[address] = side.clock()
            log.debug("freshcache: no Redis Cluster node answered CLUSTER SLOTS: %s", last)
        finally:
            side.refreshing = None

    async def _call(
        self,
        side: _AsyncSide,
        slot: int,
        command: tuple[Any, ...],
        options: dict[str, Any] = _NO_OPTIONS,
        address: str | None = None,
        asking: bool = False,
        durable: bool = False,
    ) -> Any:
        """One command on the primary of ``slot``, following MOVED and ASK; ``durable``: an
        invalidation, acknowledged by the primary's replicas before it counts as done."""
        if address is None:
            address = side.owner(slot)
        for _ in range(MAX_REDIRECTS + 1):
            node = self._node(side, address)
            acks = side.acks(address) if durable else 0
            try:
                async with node.gate:
                    if not asking and not acks:
                        return await _ask(node.client, command, options)
                    # ASKING holds for the next command on the same connection only, and WAIT
                    # covers the writes made on its own connection: both are pipelined with it.
                    async with node.client.pipeline(transaction=False) as pipe:
                        if asking:
                            pipe.execute_command("ASKING")
                        pipe.execute_command(*command, **options)
                        if acks:
                            pipe.execute_command("WAIT", acks, side.wait_ms)
                        replies = await pipe.execute(raise_on_error=False)
                result = replies[1 if asking else 0]
                if isinstance(result, Exception):
                    raise result
                if acks:
                    side.check_acks(address, replies[-1], acks)
                return result
            except redis.exceptions.MovedError as exc:
                address, asking = side.moved(exc, address), False
            except redis.exceptions.AskError as exc:
                address, asking = _redirect_target(exc, address), True
            except redis.exceptions.NoScriptError:
                raise  # _script's to handle
            except _ERRORS as exc:
                raise side.failed(exc, address) from exc
        side.stale = True
        raise BackendError("server", f"slot {slot}: more than {MAX_REDIRECTS} redirections")

    async def _script(
        self, side: _AsyncSide, slot: int, script: _Script, keys: Sequence[str], args: list[Any]
    ) -> Any:
        try:
            return await self._call(side, slot, ("EVALSHA", script.sha, len(keys), *keys, *args))
        except redis.exceptions.NoScriptError:
            # First use on this node (or after a restart, or a failover): EVAL also caches it.
            try:
                return await self._call(
                    side, slot, ("EVAL", script.source, len(keys), *keys, *args)
                )
            except redis.exceptions.NoScriptError as exc:
                raise _classify(exc) from exc

    async def _follow(
        self,
        side: _AsyncSide,
        slot: int,
        command: tuple[Any, ...],
        options: dict[str, Any],
        redirect: redis.exceptions.AskError,
        address: str,
        durable: bool = False,
    ) -> Any:
        """Send again a command that ``address`` answered with MOVED or ASK (MovedError is a
        kind of AskError in redis-py)."""
        if isinstance(redirect, redis.exceptions.MovedError):
            target = side.moved(redirect, address)
            return await self._call(side, slot, command, options, target, False, durable)
        target = _redirect_target(redirect, address)
        return await self._call(side, slot, command, options, target, True, durable)

    async def _batch(
        self, side: _AsyncSide, address: str, items: list[tuple[int, _Item]], durable: bool
    ) -> list[tuple[int, Any]]:
        """Items for one node in one round trip; any that are redirected are re-sent alone."""
        if len(items) == 1:
            index, (slot, command, options) = items[0]
            return [
                (index, await self._call(side, slot, command, options, address, False, durable))
            ]
        node = self._node(side, address)
        acks = side.acks(address) if durable else 0
        try:
            async with node.gate, node.client.pipeline(transaction=False) as pipe:
                for _, (_, command, options) in items:
                    pipe.execute_command(*command, **options)
                if acks:
                    pipe.execute_command("WAIT", acks, side.wait_ms)
                results = await pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            raise side.failed(exc, address) from exc
        if acks:
            side.check_acks(address, results.pop(), acks)
        out = []
        for (index, (slot, command, options)), result in zip(items, results, strict=True):
            if isinstance(result, redis.exceptions.AskError):  # MOVED or ASK
                result = await self._follow(side, slot, command, options, result, address, durable)
            elif isinstance(result, BaseException):
                raise side.failed(result, address) from result
            out.append((index, result))
        return out

    async def _fanout(
        self, side: _AsyncSide, items: list[_Item], durable: bool = False
    ) -> list[Any]:
        """Items on whichever primaries serve them: one pipeline per primary, in parallel."""
        groups = _group(items, side)
        if len(groups) == 1:  # one slot (token creation): no task to spawn
            ((address, group),) = groups.items()
            done: list[list[tuple[int, Any]] | BaseException] = [
                await self._batch(side, address, group, durable)
            ]
        else:
            done = await asyncio.gather(
                *(self._batch(side, address, group, durable) for address, group in groups.items()),
                return_exceptions=True,  # let every node finish before reporting the first failure
            )
        results: list[Any] = [None] * len(items)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
            for index, result in outcome:
                results[index] = result
        return results

    async def _on_node(self, side: _AsyncSide, address: str, command: tuple[Any, ...]) -> Any:
        """A command for one node itself (SCAN, PING), not for a slot."""
        node = self._node(side, address)
        try:
            async with node.gate:
                return await _ask(node.client, command, _NO_OPTIONS)
        except _ERRORS as exc:
            raise side.failed(exc, address) from exc

    async def _primaries(self, durable: bool = False) -> tuple[_AsyncSide, tuple[str, ...]]:
        side = await self._ready(durable)
        side.owner(0)  # raises if there is no map at all
        assert side.map is not None
        return side, side.map.serving()

    # -- the AsyncBackend methods

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        side = self._side
        if side is None or side.stale or side.loop is not asyncio.get_running_loop():
            side = await self._ready()
        layout = self.layout
        shard = layout.shard_of(keys[0])  # the entry routes its token keys
        tag, slot = layout.tags[shard], layout.slots[shard]
        command = ("MGET", *[tag + key for key in keys])
        # The hit path, inlined: the node the map names, one MGET. Anything else (no map yet,
        # a redirection) goes the general way.
        owners = side.owners
        address = owners[slot] if owners is not None else None
        node = side.nodes.get(address) if address is not None else None
        if node is None or address is None:
            return await self._call(side, slot, command)  # type: ignore[no-any-return]
        try:
            async with node.gate:
                result: list[bytes | None] = await _ask(node.client, command, _NO_OPTIONS)
        except redis.exceptions.AskError as exc:  # MOVED or ASK
            result = await self._follow(side, slot, command, _NO_OPTIONS, exc, address)
        except _ERRORS as exc:
            raise side.failed(exc, address) from exc
        return result

    async def create_tokens(
        self, route: str, keys: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        side = await self._ready()
        shard = self.layout.shard_of(route)
        tag, slot = self.layout.tags[shard], self.layout.slots[shard]
        items: list[_Item] = [
            (slot, ("SET", tag + key, token, "NX", "GET", "PX", ttl_ms), _SET_GET)
            for key, token in zip(keys, fresh, strict=True)
        ]
        previous = await self._fanout(side, items)  # one slot: one pipeline on one node
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    async def bump(self, key: str, token: bytes, ttl_ms: int) -> None:
        # XX: rewrite the copies that exist. A shard without one has no valid entry under this
        # prefix, and a copy created there later is created after this bump, so whoever creates
        # it computes after the write this invalidates.
        side = await self._ready(durable=True)
        layout = self.layout
        await self._fanout(
            side,
            [
                (slot, ("SET", tag + key, token, "XX", "PX", ttl_ms), _NO_OPTIONS)
                for tag, slot in zip(layout.tags, layout.slots, strict=True)
            ],
            durable=True,
        )

    async def store_if_unchanged(
        self,
        key: str,
        value: bytes,
        ttl_ms: int,
        lease: bytes,
        token_keys: Sequence[str],
        token_ttl_ms: int,
    ) -> bool:
        side = await self._ready()
        shard = self.layout.shard_of(key)
        tag = self.layout.tags[shard]
        keys = [tag + key, *[tag + token_key for token_key in token_keys]]  # one slot
        stored = await self._script(
            side, self.layout.slots[shard], _STORE, keys, [value, ttl_ms, lease, token_ttl_ms]
        )
        return bool(stored)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        side = await self._ready(durable=True)
        shard = self.layout.shard_of(key)
        command = ("SET", self.layout.tags[shard] + key, value, "PX", ttl_ms)
        # A tombstone is an invalidation: it must survive a failover like a bump.
        await self._call(side, self.layout.slots[shard], command, durable=True)

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        side = await self._ready(durable=True)
        physical = [self.layout.physical(key).encode() for key in keys]
        items = _unlink_items(self.layout, physical)
        return sum(int(n) for n in await self._fanout(side, items, durable=True))

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        side, primaries = await self._primaries(durable=True)
        counts = await asyncio.gather(
            *(self._delete_on(side, address, match, keep_prefix) for address in primaries),
            return_exceptions=True,
        )
        for count in counts:
            if isinstance(count, BaseException):
                raise count
        return sum(c for c in counts if isinstance(c, int))

    async def _delete_on(self, side: _AsyncSide, address: str, match: str, keep: str) -> int:
        keep_physical = keep.encode()
        deleted = 0
        batch: list[bytes] = []
        cursor: int = 0
        pattern = self.layout.match(match)
        while True:
            cursor, keys = await self._on_node(
                side, address, ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            )
            batch += [k for k in keys if not k[TAG_LENGTH:].startswith(keep_physical)]
            if len(batch) >= UNLINK_BATCH or (cursor == 0 and batch):
                items = _unlink_items(self.layout, batch)
                counts = await self._fanout(side, items, durable=True)
                deleted += sum(int(n) for n in counts)
                batch = []
            if cursor == 0:
                return deleted

    async def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        side = await self._ready()
        shard = self.layout.shard_of(key)
        command = ("SET", self.layout.tags[shard] + key, owner, "NX", "PX", ttl_ms)
        return bool(await self._call(side, self.layout.slots[shard], command))

    async def release_lock(self, key: str, owner: bytes) -> None:
        side = await self._ready()
        shard = self.layout.shard_of(key)
        await self._script(
            side, self.layout.slots[shard], _RELEASE, [self.layout.tags[shard] + key], [owner]
        )

    async def ttl_ms(self, key: str) -> int | None:
        side = await self._ready()
        shard = self.layout.shard_of(key)
        command = ("PTTL", self.layout.tags[shard] + key)
        ttl = int(await self._call(side, self.layout.slots[shard], command))
        return None if ttl == -2 else ttl

    async def scan(self, match: str, limit: int) -> list[str]:
        side, primaries = await self._primaries()
        found: dict[str, None] = {}
        pattern = self.layout.match(match)
        for address in primaries:
            cursor: int = 0
            while len(found) < limit:
                cursor, keys = await self._on_node(
                    side, address, ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
                )
                for key in keys:
                    found[self.layout.logical(key.decode("utf-8", "replace"))] = None
                if cursor == 0:
                    break
        return list(found)[:limit]

    async def ping(self) -> None:
        side, primaries = await self._primaries()
        outcomes = await asyncio.gather(
            *(self._on_node(side, address, ("PING",)) for address in primaries),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def aclose(self) -> None:
        side, self._side = self._side, None
        if side is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if side.loop is not running:
            return  # another loop's connections: nothing can be awaited on them from here
        if side.refreshing is not None:
            side.refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await side.refreshing
        for node in side.nodes.values():
            with contextlib.suppress(*_ERRORS):
                await node.client.aclose()


# ============================================================================ sync


def _tell(client: redis.Redis, command: tuple[Any, ...], options: dict[str, Any]) -> Any:
    return client.execute_command(*command, **options)  # type: ignore[no-untyped-call]


class SyncClusterBackend:
    """The synchronous backend (``SyncBackend``), thread-safe: each node's pool hands each
    thread its own connection; the slot map is replaced, never edited in place."""

    kind = "cluster"

    def __init__(
        self,
        url: str,
        timeout: float,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.settings = parse_cluster_url(url)
        self.layout = ShardLayout(self.settings.shards)
        self._options = pool_options(timeout, max_connections, pool_timeout, connect_timeout)
        self.topology = _Topology(
            self.settings.seeds, clock, self.settings.wait_replicas, max(1, int(timeout * 800))
        )
        self._nodes: dict[str, redis.Redis] = {}
        self._nodes_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        _validate_options(self.settings, self._pool(self.settings.seeds[0]))

    # -- plumbing

    def _pool(self, address: str) -> redis.BlockingConnectionPool:
        pool = redis.BlockingConnectionPool.from_url(
            self.settings.node_url(address), **self._options
        )
        pool.connection_kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
        return pool

    def _node(self, address: str) -> redis.Redis:
        client = self._nodes.get(address)
        if client is None:
            with self._nodes_lock:
                client = self._nodes.get(address)
                if client is None:
                    client = self._nodes[address] = redis.Redis(connection_pool=self._pool(address))
        return client

    def _ready(self, durable: bool = False) -> _Topology:
        topology = self.topology
        if topology.stale or (durable and topology.aged()):
            self._refresh_soon(topology)
        return topology

    def _refresh_soon(self, topology: _Topology) -> None:
        if topology.owners is None:
            # No map at all: wait for whoever is reading it (bounded by its socket timeouts).
            with self._refresh_lock:
                if topology.owners is None and topology.refresh_due():
                    self._refresh(topology)
            return
        if not topology.refresh_due() or not self._refresh_lock.acquire(blocking=False):
            return  # refreshed a moment ago, or another thread is at it: use the current map
        try:
            if topology.stale:
                self._refresh(topology)
        finally:
            self._refresh_lock.release()

    def _refresh(self, topology: _Topology) -> None:
        topology.last_refresh = topology.clock()
        last: BaseException | None = None
        for address in topology.candidates():
            try:
                with self._node(address).pipeline(transaction=False) as pipe:
                    pipe.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                    pipe.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
                    slots, nodes = pipe.execute(raise_on_error=False)
                topology.install(_slot_map(slots, nodes, address))
                return
            except (*_ERRORS, BackendError, *_MALFORMED) as exc:
                last = exc
                if not isinstance(exc, (redis.exceptions.ResponseError, *_MALFORMED)):
                    topology.suspects[address] = topology.clock()
        log.debug("freshcache: no Redis Cluster node answered CLUSTER SLOTS: %s", last)

    def _call(
        self,
        topology: _Topology,
        slot: int,
        command: tuple[Any, ...],
        options: dict[str, Any] = _NO_OPTIONS,
        address: str | None = None,
        asking: bool = False,
        durable: bool = False,
    ) -> Any:
        """One command on the primary of ``slot``, following MOVED and ASK (see the async
        backend's ``_call``)."""
        if address is None:
            address = topology.owner(slot)
        for _ in range(MAX_REDIRECTS + 1):
            client = self._node(address)
            acks = topology.acks(address) if durable else 0
            try:
                if not asking and not acks:
                    return _tell(client, command, options)
                with client.pipeline(transaction=False) as pipe:
                    if asking:
                        pipe.execute_command("ASKING")  # type: ignore[no-untyped-call]
                    pipe.execute_command(*command, **options)  # type: ignore[no-untyped-call]
                    if acks:
                        pipe.execute_command(  # type: ignore[no-untyped-call]
                            "WAIT", acks, topology.wait_ms
                        )
                    replies = pipe.execute(raise_on_error=False)
                result = replies[1 if asking else 0]
                if isinstance(result, Exception):
                    raise result
                if acks:
                    topology.check_acks(address, replies[-1], acks)
                return result
            except redis.exceptions.MovedError as exc:
                address, asking = topology.moved(exc, address), False
            except redis.exceptions.AskError as exc:
                address, asking = _redirect_target(exc, address), True
            except redis.exceptions.NoScriptError:
                raise
            except _ERRORS as exc:
                raise topology.failed(exc, address) from exc
        topology.stale = True
        raise BackendError("server", f"slot {slot}: more than {MAX_REDIRECTS} redirections")

    def _script(
        self, topology: _Topology, slot: int, script: _Script, keys: Sequence[str], args: list[Any]
    ) -> Any:
        try:
            return self._call(topology, slot, ("EVALSHA", script.sha, len(keys), *keys, *args))
        except redis.exceptions.NoScriptError:
            try:
                return self._call(topology, slot, ("EVAL", script.source, len(keys), *keys, *args))
            except redis.exceptions.NoScriptError as exc:
                raise _classify(exc) from exc

    def _follow(
        self,
        topology: _Topology,
        slot: int,
        command: tuple[Any, ...],
        options: dict[str, Any],
        redirect: redis.exceptions.AskError,
        address: str,
        durable: bool = False,
    ) -> Any:
        """Send again a command that ``address`` answered with MOVED or ASK."""
        if isinstance(redirect, redis.exceptions.MovedError):
            target = topology.moved(redirect, address)
            return self._call(topology, slot, command, options, target, False, durable)
        target = _redirect_target(redirect, address)
        return self._call(topology, slot, command, options, target, True, durable)

    def _batch(
        self, topology: _Topology, address: str, items: list[tuple[int, _Item]], durable: bool
    ) -> list[tuple[int, Any]]:
        if len(items) == 1:
            index, (slot, command, options) = items[0]
            return [(index, self._call(topology, slot, command, options, address, False, durable))]
        acks = topology.acks(address) if durable else 0
        try:
            with self._node(address).pipeline(transaction=False) as pipe:
                for _, (_, command, options) in items:
                    pipe.execute_command(*command, **options)  # type: ignore[no-untyped-call]
                if acks:
                    pipe.execute_command(  # type: ignore[no-untyped-call]
                        "WAIT", acks, topology.wait_ms
                    )
                results = pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            raise topology.failed(exc, address) from exc
        if acks:
            topology.check_acks(address, results.pop(), acks)
        out = []
        for (index, (slot, command, options)), result in zip(items, results, strict=True):
            if isinstance(result, redis.exceptions.AskError):  # MOVED or ASK
                result = self._follow(topology, slot, command, options, result, address, durable)
            elif isinstance(result, BaseException):
                raise topology.failed(result, address) from result
            out.append((index, result))
        return out

    def _fanout(self, topology: _Topology, items: list[_Item], durable: bool = False) -> list[Any]:
        """One pipeline per primary, one primary after the other (a round trip each)."""
        results: list[Any] = [None] * len(items)
        failure: BackendError | None = None
        for address, group in _group(items, topology).items():
            try:
                for index, result in self._batch(topology, address, group, durable):
                    results[index] = result
            except BackendError as exc:
                failure = failure or exc  # the other nodes still get their share
        if failure is not None:
            raise failure
        return results

    def _on_node(self, topology: _Topology, address: str, command: tuple[Any, ...]) -> Any:
        try:
            return _tell(self._node(address), command, _NO_OPTIONS)
        except _ERRORS as exc:
            raise topology.failed(exc, address) from exc

    def _primaries(self, durable: bool = False) -> tuple[_Topology, tuple[str, ...]]:
        topology = self._ready(durable)
        topology.owner(0)
        assert topology.map is not None
        return topology, topology.map.serving()

    # -- the SyncBackend methods

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        topology = self.topology
        if topology.stale:
            self._refresh_soon(topology)
        layout = self.layout
        shard = layout.shard_of(keys[0])  # the entry routes its token keys
        tag, slot = layout.tags[shard], layout.slots[shard]
        command = ("MGET", *[tag + key for key in keys])
        owners = topology.owners  # the hit path, inlined, as in the async backend
        address = owners[slot] if owners is not None else None
        client = self._nodes.get(address) if address is not None else None
        if client is None or address is None:
            return self._call(topology, slot, command)  # type: ignore[no-any-return]
        try:
            result: list[bytes | None] = _tell(client, command, _NO_OPTIONS)
        except redis.exceptions.AskError as exc:  # MOVED or ASK
            result = self._follow(topology, slot, command, _NO_OPTIONS, exc, address)
        except _ERRORS as exc:
            raise topology.failed(exc, address) from exc
        return result

    def create_tokens(
        self, route: str, keys: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        topology = self._ready()
        shard = self.layout.shard_of(route)
        tag, slot = self.layout.tags[shard], self.layout.slots[shard]
        items: list[_Item] = [
            (slot, ("SET", tag + key, token, "NX", "GET", "PX", ttl_ms), _SET_GET)
            for key, token in zip(keys, fresh, strict=True)
        ]
        previous = self._fanout(topology, items)
        return [old if old is not None else new for old, new in zip(previous, fresh, strict=True)]

    def bump(self, key: str, token: bytes, ttl_ms: int) -> None:
        topology = self._ready(durable=True)
        layout = self.layout
        self._fanout(
            topology,
            [
                (slot, ("SET", tag + key, token, "XX", "PX", ttl_ms), _NO_OPTIONS)
                for tag, slot in zip(layout.tags, layout.slots, strict=True)
            ],
            durable=True,
        )

    def store_if_unchanged(
        self,
        key: str,
        value: bytes,
        ttl_ms: int,
        lease: bytes,
        token_keys: Sequence[str],
        token_ttl_ms: int,
    ) -> bool:
        topology = self._ready()
        shard = self.layout.shard_of(key)
        tag = self.layout.tags[shard]
        keys = [tag + key, *[tag + token_key for token_key in token_keys]]
        stored = self._script(
            topology, self.layout.slots[shard], _STORE, keys, [value, ttl_ms, lease, token_ttl_ms]
        )
        return bool(stored)

    def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        topology = self._ready(durable=True)
        shard = self.layout.shard_of(key)
        command = ("SET", self.layout.tags[shard] + key, value, "PX", ttl_ms)
        self._call(topology, self.layout.slots[shard], command, durable=True)

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        topology = self._ready(durable=True)
        physical = [self.layout.physical(key).encode() for key in keys]
        items = _unlink_items(self.layout, physical)
        return sum(int(n) for n in self._fanout(topology, items, durable=True))

    def delete_matching(self, match: str, keep_prefix: str) -> int:
        topology, primaries = self._primaries(durable=True)
        deleted = 0
        failure: BackendError | None = None
        for address in primaries:
            try:
                deleted += self._delete_on(topology, address, match, keep_prefix)
            except BackendError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return deleted

    def _delete_on(self, topology: _Topology, address: str, match: str, keep: str) -> int:
        keep_physical = keep.encode()
        deleted = 0
        batch: list[bytes] = []
        cursor: int = 0
        pattern = self.layout.match(match)
        while True:
            cursor, keys = self._on_node(
                topology, address, ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            )
            batch += [k for k in keys if not k[TAG_LENGTH:].startswith(keep_physical)]
            if len(batch) >= UNLINK_BATCH or (cursor == 0 and batch):
                items = _unlink_items(self.layout, batch)
                counts = self._fanout(topology, items, durable=True)
                deleted += sum(int(n) for n in counts)
                batch = []
            if cursor == 0:
                return deleted

    def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        topology = self._ready()
        shard = self.layout.shard_of(key)
        command = ("SET", self.layout.tags[shard] + key, owner, "NX", "PX", ttl_ms)
        return bool(self._call(topology, self.layout.slots[shard], command))

    def release_lock(self, key: str, owner: bytes) -> None:
        topology = self._ready()
        shard = self.layout.shard_of(key)
        self._script(
            topology, self.layout.slots[shard], _RELEASE, [self.layout.tags[shard] + key], [owner]
        )

    def ttl_ms(self, key: str) -> int | None:
        topology = self._ready()
        shard = self.layout.shard_of(key)
        command = ("PTTL", self.layout.tags[shard] + key)
        ttl = int(self._call(topology, self.layout.slots[shard], command))
        return None if ttl == -2 else ttl

    def scan(self, match: str, limit: int) -> list[str]:
        topology, primaries = self._primaries()
        found: dict[str, None] = {}
        pattern = self.layout.match(match)
        for address in primaries:
            cursor: int = 0
            while len(found) < limit:
                cursor, keys = self._on_node(
                    topology, address, ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
                )
                for key in keys:
                    found[self.layout.logical(key.decode("utf-8", "replace"))] = None
                if cursor == 0:
                    break
        return list(found)[:limit]

    def ping(self) -> None:
        topology, primaries = self._primaries()
        failure: BackendError | None = None
        for address in primaries:
            try:
                self._on_node(topology, address, ("PING",))
            except BackendError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def close(self) -> None:
        with self._nodes_lock:
            nodes, self._nodes = list(self._nodes.values()), {}
        for client in nodes:
            with contextlib.suppress(*_ERRORS):
                # Redis.close() leaves a pool it was given open: disconnect it ourselves.
                client.close()
                client.connection_pool.disconnect()
