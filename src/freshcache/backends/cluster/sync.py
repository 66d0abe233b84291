"""The synchronous face of the cluster backend (``SyncBackend``): the I/O, on redis-py's
blocking clients, one per primary, shared by threads. What to send is ``commands``'; how a
call travels is ``routing``'s; what the cluster looks like is ``topology``'s."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions
from redis.backoff import NoBackoff

from freshcache.backends.base import BackendError, EntryKeys
from freshcache.backends.cluster import commands, identity, routing
from freshcache.backends.cluster.commands import NO_OPTIONS, Item, Script
from freshcache.backends.cluster.errors import ERRORS, REFRESH_ERRORS, classify
from freshcache.backends.cluster.layout import ShardLayout
from freshcache.backends.cluster.settings import parse_cluster_url, validate_options
from freshcache.backends.cluster.topology import MAX_REDIRECTS, Topology, no_callback, wait_ms
from freshcache.backends.redis.options import pool_options

T = TypeVar("T")


def _tell(client: redis.Redis, command: tuple[Any, ...], options: dict[str, Any]) -> Any:
    return client.execute_command(*command, **options)  # type: ignore[no-untyped-call]


def _one_by_one(parts: Iterable[Callable[[], T]]) -> list[T | BaseException]:
    """``parts`` one after the other (a round trip each); one that fails does not keep the
    others from their share (``routing.settled`` raises its failure at the end)."""
    outcomes: list[T | BaseException] = []
    for part in parts:
        try:
            outcomes.append(part())
        except BackendError as exc:
            outcomes.append(exc)
    return outcomes


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
        on_new_primaries: Callable[[], None] = no_callback,
    ) -> None:
        """``on_new_primaries``: called when a node that was not a primary serves slots and
        nothing failed (a failover learnt from MOVED or a slot map refresh)."""
        self.url = url
        self.settings = parse_cluster_url(url)
        self.layout = ShardLayout(self.settings.shards)
        self._options = pool_options(timeout, max_connections, pool_timeout, connect_timeout)
        self.topology = Topology(
            self.settings.seeds, clock, self.settings.wait_replicas, wait_ms(timeout)
        )
        self.topology.on_change = on_new_primaries
        self._nodes: dict[str, redis.Redis] = {}
        self._nodes_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        validate_options(self.settings, self._pool(self.settings.seeds[0]))

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

    def _ready(self, durable: bool = False) -> Topology:
        topology = self.topology
        if topology.stale or (durable and topology.aged()):
            self._refresh_soon(topology)
        return topology

    def _refresh_soon(self, topology: Topology) -> None:
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

    def _refresh(self, topology: Topology) -> None:
        last: BaseException | None = None
        for address in topology.begin_refresh():
            try:
                with self._node(address).pipeline(transaction=False) as pipe:
                    routing.queue_topology_query(pipe)
                    replies = pipe.execute(raise_on_error=False)
                topology.answered(address, replies)
                return
            except REFRESH_ERRORS as exc:
                last = exc
                topology.unanswered(address, exc)
        topology.unrefreshed(last)

    def _call(
        self,
        topology: Topology,
        slot: int,
        command: tuple[Any, ...],
        options: dict[str, Any] = NO_OPTIONS,
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
                    routing.queue_call(pipe, command, options, asking, acks, topology.wait_ms)
                    replies = pipe.execute(raise_on_error=False)
                return routing.call_reply(topology, address, replies, asking, acks)
            except redis.exceptions.AskError as exc:  # MOVED or ASK
                address, asking = topology.redirected(exc, address)
            except redis.exceptions.NoScriptError:
                raise
            except ERRORS as exc:
                raise topology.failed(exc, address) from exc
        raise topology.too_many_redirects(slot)

    def _script(
        self, topology: Topology, slot: int, script: Script, keys: Sequence[str], args: list[Any]
    ) -> Any:
        try:
            return self._call(topology, slot, script.evalsha(keys, args))
        except redis.exceptions.NoScriptError:
            try:
                return self._call(topology, slot, script.eval(keys, args))
            except redis.exceptions.NoScriptError as exc:
                raise classify(exc) from exc

    def _batch(
        self, topology: Topology, address: str, items: list[tuple[int, Item]], durable: bool
    ) -> list[tuple[int, Any]]:
        if len(items) == 1:
            index, (slot, command, options) = items[0]
            return [(index, self._call(topology, slot, command, options, address, False, durable))]
        acks = topology.acks(address) if durable else 0
        try:
            with self._node(address).pipeline(transaction=False) as pipe:
                routing.queue_batch(pipe, items, acks, topology.wait_ms)
                results = pipe.execute(raise_on_error=False)
        except ERRORS as exc:
            raise topology.failed(exc, address) from exc
        out = []
        for index, (slot, command, options), result in routing.batch_replies(
            topology, address, items, results, acks
        ):
            if isinstance(result, redis.exceptions.AskError):  # MOVED or ASK
                target, asking = topology.redirected(result, address)
                result = self._call(topology, slot, command, options, target, asking, durable)
            out.append((index, result))
        return out

    def _fanout(self, topology: Topology, items: list[Item], durable: bool = False) -> list[Any]:
        """One pipeline per primary, one primary after the other (a round trip each)."""
        groups = routing.group(items, topology)
        return routing.placed(
            len(items),
            _one_by_one(
                functools.partial(self._batch, topology, address, group, durable)
                for address, group in groups.items()
            ),
        )

    def _on_node(self, topology: Topology, address: str, command: tuple[Any, ...]) -> Any:
        try:
            return _tell(self._node(address), command, NO_OPTIONS)
        except ERRORS as exc:
            raise topology.failed(exc, address) from exc

    def _primaries(self, durable: bool = False) -> tuple[Topology, tuple[str, ...]]:
        topology = self._ready(durable)
        return topology, topology.serving()

    # -- the SyncBackend methods

    def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        topology = self.topology
        if topology.stale:
            self._refresh_soon(topology)
        slot, command = commands.get_many(self.layout, keys)
        owners = topology.owners  # the hit path, inlined, as in the async backend
        address = owners[slot] if owners is not None else None
        client = self._nodes.get(address) if address is not None else None
        if client is None or address is None:
            return self._call(topology, slot, command)  # type: ignore[no-any-return]
        try:
            result: list[bytes | None] = _tell(client, command, NO_OPTIONS)
        except redis.exceptions.AskError as exc:  # MOVED or ASK
            target, asking = topology.redirected(exc, address)
            result = self._call(topology, slot, command, NO_OPTIONS, target, asking)
        except ERRORS as exc:
            raise topology.failed(exc, address) from exc
        return result

    def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        topology = self._ready()
        items = commands.create_tokens(self.layout, keys, missing, fresh, ttl_ms)
        return commands.tokens_now(self._fanout(topology, items), fresh)

    def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        topology = self._ready(durable=True)
        self._fanout(topology, commands.bump(self.layout, token_key, token, ttl_ms), durable=True)

    def unlink_token(self, token_key: str) -> None:
        topology = self._ready(durable=True)
        self._fanout(topology, commands.unlink_token(self.layout, token_key), durable=True)

    def server_identity(self) -> bytes | None:
        topology, primaries = self._primaries()
        found = routing.settled(
            _one_by_one(
                functools.partial(self._primary_identity, topology, address)
                for address in primaries
            )
        )
        return identity.cluster_identity(found)

    def _primary_identity(self, topology: Topology, address: str) -> bytes:
        server, replication = [
            self._on_node(topology, address, section) for section in identity.SECTIONS
        ]
        return identity.primary_identity(server, replication)

    def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        topology = self._ready()
        call = commands.store_if_unchanged(self.layout, keys, value, ttl_ms, lease, token_ttl_ms)
        return bool(self._script(topology, *call))

    def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        topology = self._ready(durable=True)
        self._call(topology, *commands.set_value(self.layout, key, value, ttl_ms), durable=True)

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        topology = self._ready(durable=True)
        items = commands.delete(self.layout, keys)
        return sum(int(n) for n in self._fanout(topology, items, durable=True))

    def delete_matching(self, match: str, keep_prefix: str) -> int:
        topology, primaries = self._primaries(durable=True)
        counts = _one_by_one(
            functools.partial(self._delete_on, topology, address, match, keep_prefix)
            for address in primaries
        )
        return sum(routing.settled(counts))

    def _delete_on(self, topology: Topology, address: str, match: str, keep: str) -> int:
        sweep = commands.Sweep(self.layout, match, keep)
        while True:
            items = sweep.scanned(self._on_node(topology, address, sweep.scan()))
            if items:
                sweep.unlinked(self._fanout(topology, items, durable=True))
            if sweep.done:
                return sweep.deleted

    def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        topology = self._ready()
        return bool(self._call(topology, *commands.acquire_lock(self.layout, key, owner, ttl_ms)))

    def release_lock(self, key: str, owner: bytes) -> None:
        topology = self._ready()
        self._script(topology, *commands.release_lock(self.layout, key, owner))

    def ttl_ms(self, key: str) -> int | None:
        topology = self._ready()
        return commands.ttl_of(self._call(topology, *commands.ttl_ms(self.layout, key)))

    def scan(self, match: str, limit: int) -> list[str]:
        topology, primaries = self._primaries()
        found: dict[str, None] = {}
        pattern = self.layout.match(match)
        for address in primaries:
            cursor: int = 0
            while len(found) < limit:
                cursor, keys = self._on_node(topology, address, commands.scan(cursor, pattern))
                found.update(commands.logical_names(self.layout, keys))
                if cursor == 0:
                    break
        return list(found)[:limit]

    def ping(self) -> None:
        topology, primaries = self._primaries()
        routing.settled(
            _one_by_one(
                functools.partial(self._on_node, topology, address, ("PING",))
                for address in primaries
            )
        )

    def close(self) -> None:
        with self._nodes_lock:
            nodes, self._nodes = list(self._nodes.values()), {}
        for client in nodes:
            with contextlib.suppress(*ERRORS):
                # Redis.close() leaves a pool it was given open: disconnect it ourselves.
                client.close()
                client.connection_pool.disconnect()
