"""The asyncio face of the cluster backend (``AsyncBackend``): the I/O, on redis-py's asyncio
clients, one per primary and event loop. What to send is ``commands``'; how a call travels is
``routing``'s; what the cluster looks like is ``topology``'s."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio
import redis.exceptions
from redis.backoff import NoBackoff

from freshcache.backends.base import EntryKeys
from freshcache.backends.cluster import commands, identity, routing
from freshcache.backends.cluster.commands import NO_OPTIONS, Item, Script
from freshcache.backends.cluster.errors import ERRORS, REFRESH_ERRORS, classify
from freshcache.backends.cluster.layout import ShardLayout
from freshcache.backends.cluster.settings import parse_cluster_url, validate_options
from freshcache.backends.cluster.topology import MAX_REDIRECTS, Topology, no_callback, wait_ms
from freshcache.backends.redis.options import pool_options
from freshcache.backends.slots import ConnectionSlots

T = TypeVar("T")


async def _ask(
    client: redis.asyncio.Redis, command: tuple[Any, ...], options: dict[str, Any]
) -> Any:
    return await client.execute_command(*command, **options)  # type: ignore[no-untyped-call]


async def _gathered(parts: Iterable[Awaitable[T]]) -> list[T]:
    """``parts`` in parallel; the first failure is raised once every node has finished."""
    return routing.settled(await asyncio.gather(*parts, return_exceptions=True))


@dataclasses.dataclass(slots=True)
class _AsyncNode:
    client: redis.asyncio.Redis
    gate: ConnectionSlots


class _AsyncSide(Topology):
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
        on_new_primaries: Callable[[], None] = no_callback,
    ) -> None:
        """``on_new_primaries``: called when a node that was not a primary serves slots and
        nothing failed (a failover learnt from MOVED or a slot map refresh)."""
        self.url = url
        self.settings = parse_cluster_url(url)
        self.layout = ShardLayout(self.settings.shards)
        self._options = pool_options(timeout, max_connections, pool_timeout, connect_timeout)
        del self._options["timeout"]  # the wait for a free connection is ConnectionSlots' job here
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        # How long a caller waits for a refresh of the map: without a map nothing can be
        # routed, so the first one gets a connect and a reply; later ones a reply or two.
        self._first_wait = float(self._options["socket_connect_timeout"]) + timeout
        self._refresh_wait = 2 * timeout
        self._wait_ms = wait_ms(timeout)
        self._clock = clock
        self._on_new_primaries = on_new_primaries
        self._side: _AsyncSide | None = None
        validate_options(self.settings, self._pool(self.settings.seeds[0]))

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
            # As in backends/redis: the old loop's clients are left to it (not awaitable here).
            side = self._side = _AsyncSide(
                loop, self.settings.seeds, self._clock, self.settings.wait_replicas, self._wait_ms
            )
            side.on_change = self._on_new_primaries
        return side

    def _node(self, side: _AsyncSide, address: str) -> _AsyncNode:
        node = side.nodes.get(address)
        if node is None:
            # Kept until aclose(), also for nodes that stop serving: a call may still hold it.
            client = redis.asyncio.Redis.from_pool(self._pool(address))
            node = side.nodes[address] = _AsyncNode(
                client, ConnectionSlots(self._max_connections, self._pool_timeout)
            )
        return node

    @property
    def topology(self) -> Topology:
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
        last: BaseException | None = None
        try:
            for address in side.begin_refresh():
                node = self._node(side, address)
                try:
                    async with node.gate, node.client.pipeline(transaction=False) as pipe:
                        routing.queue_topology_query(pipe)
                        replies = await pipe.execute(raise_on_error=False)
                    side.answered(address, replies)
                    return
                except REFRESH_ERRORS as exc:
                    # Whatever one node does wrong, ask the next: this task must never fail
                    # the callers that wait for it.
                    last = exc
                    side.unanswered(address, exc)
            side.unrefreshed(last)
        finally:
            side.refreshing = None

    async def _call(
        self,
        side: _AsyncSide,
        slot: int,
        command: tuple[Any, ...],
        options: dict[str, Any] = NO_OPTIONS,
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
                    # ASKING and WAIT act on one connection: pipelined with the command.
                    async with node.client.pipeline(transaction=False) as pipe:
                        routing.queue_call(pipe, command, options, asking, acks, side.wait_ms)
                        replies = await pipe.execute(raise_on_error=False)
                return routing.call_reply(side, address, replies, asking, acks)
            except redis.exceptions.AskError as exc:  # MOVED or ASK
                address, asking = side.redirected(exc, address)
            except redis.exceptions.NoScriptError:
                raise  # _script's to handle
            except ERRORS as exc:
                raise side.failed(exc, address) from exc
        raise side.too_many_redirects(slot)

    async def _script(
        self, side: _AsyncSide, slot: int, script: Script, keys: Sequence[str], args: list[Any]
    ) -> Any:
        try:
            return await self._call(side, slot, script.evalsha(keys, args))
        except redis.exceptions.NoScriptError:
            # First use on this node (or after a restart, or a failover): EVAL also caches it.
            try:
                return await self._call(side, slot, script.eval(keys, args))
            except redis.exceptions.NoScriptError as exc:
                raise classify(exc) from exc

    async def _batch(
        self, side: _AsyncSide, address: str, items: list[tuple[int, Item]], durable: bool
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
                routing.queue_batch(pipe, items, acks, side.wait_ms)
                results = await pipe.execute(raise_on_error=False)
        except ERRORS as exc:
            raise side.failed(exc, address) from exc
        out = []
        for index, (slot, command, options), result in routing.batch_replies(
            side, address, items, results, acks
        ):
            if isinstance(result, redis.exceptions.AskError):  # MOVED or ASK
                target, asking = side.redirected(result, address)
                result = await self._call(side, slot, command, options, target, asking, durable)
            out.append((index, result))
        return out

    async def _fanout(
        self, side: _AsyncSide, items: list[Item], durable: bool = False
    ) -> list[Any]:
        """Items on whichever primaries serve them: one pipeline per primary, in parallel."""
        groups = routing.group(items, side)
        if len(groups) == 1:  # one slot (token creation): no task to spawn
            ((address, group),) = groups.items()
            return routing.placed(len(items), [await self._batch(side, address, group, durable)])
        done = await asyncio.gather(
            *(self._batch(side, address, group, durable) for address, group in groups.items()),
            return_exceptions=True,  # let every node finish before reporting the first failure
        )
        return routing.placed(len(items), done)

    async def _on_node(self, side: _AsyncSide, address: str, command: tuple[Any, ...]) -> Any:
        """A command for one node itself (SCAN, PING), not for a slot."""
        node = self._node(side, address)
        try:
            async with node.gate:
                return await _ask(node.client, command, NO_OPTIONS)
        except ERRORS as exc:
            raise side.failed(exc, address) from exc

    async def _primaries(self, durable: bool = False) -> tuple[_AsyncSide, tuple[str, ...]]:
        side = await self._ready(durable)
        return side, side.serving()

    # -- the AsyncBackend methods

    async def get_many(self, keys: EntryKeys) -> list[bytes | None]:
        side = self._side
        if side is None or side.stale or side.loop is not asyncio.get_running_loop():
            side = await self._ready()
        slot, command = commands.get_many(self.layout, keys)
        # The hit path, inlined: the node the map names, one MGET. Anything else (no map yet,
        # a redirection) goes the general way.
        owners = side.owners
        address = owners[slot] if owners is not None else None
        node = side.nodes.get(address) if address is not None else None
        if node is None or address is None:
            return await self._call(side, slot, command)  # type: ignore[no-any-return]
        try:
            async with node.gate:
                result: list[bytes | None] = await _ask(node.client, command, NO_OPTIONS)
        except redis.exceptions.AskError as exc:  # MOVED or ASK
            target, asking = side.redirected(exc, address)
            result = await self._call(side, slot, command, NO_OPTIONS, target, asking)
        except ERRORS as exc:
            raise side.failed(exc, address) from exc
        return result

    async def create_tokens(
        self, keys: EntryKeys, missing: Sequence[str], fresh: Sequence[bytes], ttl_ms: int
    ) -> list[bytes]:
        side = await self._ready()
        items = commands.create_tokens(self.layout, keys, missing, fresh, ttl_ms)
        return commands.tokens_now(await self._fanout(side, items), fresh)

    async def bump(self, token_key: str, token: bytes, ttl_ms: int) -> None:
        side = await self._ready(durable=True)
        await self._fanout(side, commands.bump(self.layout, token_key, token, ttl_ms), durable=True)

    async def unlink_token(self, token_key: str) -> None:
        side = await self._ready(durable=True)
        await self._fanout(side, commands.unlink_token(self.layout, token_key), durable=True)

    async def server_identity(self) -> bytes | None:
        side, primaries = await self._primaries()
        return identity.cluster_identity(
            await _gathered(self._primary_identity(side, address) for address in primaries)
        )

    async def _primary_identity(self, side: _AsyncSide, address: str) -> bytes:
        server, replication = [
            await self._on_node(side, address, section) for section in identity.SECTIONS
        ]
        return identity.primary_identity(server, replication)

    async def store_if_unchanged(
        self, keys: EntryKeys, value: bytes, ttl_ms: int, lease: bytes, token_ttl_ms: int
    ) -> bool:
        side = await self._ready()
        call = commands.store_if_unchanged(self.layout, keys, value, ttl_ms, lease, token_ttl_ms)
        return bool(await self._script(side, *call))

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        side = await self._ready(durable=True)
        # A tombstone is an invalidation: it must survive a failover like a bump.
        await self._call(side, *commands.set_value(self.layout, key, value, ttl_ms), durable=True)

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        side = await self._ready(durable=True)
        items = commands.delete(self.layout, keys)
        return sum(int(n) for n in await self._fanout(side, items, durable=True))

    async def delete_matching(self, match: str, keep_prefix: str) -> int:
        side, primaries = await self._primaries(durable=True)
        return sum(
            await _gathered(
                self._delete_on(side, address, match, keep_prefix) for address in primaries
            )
        )

    async def _delete_on(self, side: _AsyncSide, address: str, match: str, keep: str) -> int:
        sweep = commands.Sweep(self.layout, match, keep)
        while True:
            items = sweep.scanned(await self._on_node(side, address, sweep.scan()))
            if items:
                sweep.unlinked(await self._fanout(side, items, durable=True))
            if sweep.done:
                return sweep.deleted

    async def acquire_lock(self, key: str, owner: bytes, ttl_ms: int) -> bool:
        side = await self._ready()
        return bool(await self._call(side, *commands.acquire_lock(self.layout, key, owner, ttl_ms)))

    async def release_lock(self, key: str, owner: bytes) -> None:
        side = await self._ready()
        await self._script(side, *commands.release_lock(self.layout, key, owner))

    async def ttl_ms(self, key: str) -> int | None:
        side = await self._ready()
        return commands.ttl_of(await self._call(side, *commands.ttl_ms(self.layout, key)))

    async def scan(self, match: str, limit: int) -> list[str]:
        side, primaries = await self._primaries()
        found: dict[str, None] = {}
        pattern = self.layout.match(match)
        for address in primaries:
            cursor: int = 0
            while len(found) < limit:
                cursor, keys = await self._on_node(side, address, commands.scan(cursor, pattern))
                found.update(commands.logical_names(self.layout, keys))
                if cursor == 0:
                    break
        return list(found)[:limit]

    async def ping(self) -> None:
        side, primaries = await self._primaries()
        await _gathered(self._on_node(side, address, ("PING",)) for address in primaries)

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
            with contextlib.suppress(*ERRORS):
                await node.client.aclose()
