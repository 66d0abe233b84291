"""Helpers for the Redis Cluster tests (a top-level module: tests/ directories are not packages,
so the name is unique on purpose).

``ClusterView`` looks at the cluster as an operator would, bypassing freshcache's read path:
which physical keys exist on which primary, their values and TTLs, and how many commands of
each kind every primary has executed (INFO commandstats), so that tests can count round trips.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import redis

from freshcache.backends.cluster import TAG_GLOB, ShardLayout, SyncClusterBackend

#: Generous: these tests check routing and counts, not latency, on a shared CI machine.
TEST_TIMEOUT = 2.0

#: Commands the tests themselves, or the replicas, send to the primaries.
NOT_OURS = frozenset({"info", "replconf", "scan", "cluster", "command", "ping", "client"})


class ClusterView:
    """The physical side of a cluster URL: nodes, keys, and per-node command counters."""

    def __init__(self, url: str) -> None:
        self.backend = SyncClusterBackend(url, timeout=5.0, max_connections=4, pool_timeout=5.0)
        self.backend.ping()  # reads the slot map
        self.layout: ShardLayout = self.backend.layout
        self._clients: dict[str, redis.Redis] = {}

    def refresh(self) -> None:
        """Read the slot map again (after a failover or a migration)."""
        self.backend.topology.stale = True
        self.backend.topology.last_refresh = float("-inf")
        self.backend.ping()

    def primaries(self) -> list[str]:
        slot_map = self.backend.topology.map
        assert slot_map is not None
        return list(slot_map.serving())

    def owner_of_shard(self, shard: int) -> str:
        slot_map = self.backend.topology.map
        assert slot_map is not None
        owner = slot_map.owners[self.layout.slots[shard]]
        assert owner is not None
        return owner

    def client(self, address: str) -> redis.Redis:
        client = self._clients.get(address)
        if client is None:
            host, _, port = address.rpartition(":")
            client = self._clients[address] = redis.Redis(host=host, port=int(port))
        return client

    # -- keys

    def physical_keys(self, namespace: str, match: str = "*") -> dict[str, list[str]]:
        """Physical keys of ``namespace`` (``{fc:XXXX}ns:...``) on each primary."""
        pattern = f"{TAG_GLOB}{namespace}:{match}"
        return {
            address: sorted(k.decode() for k in self.client(address).scan_iter(match=pattern))
            for address in self.primaries()
        }

    def all_physical_keys(self, namespace: str, match: str = "*") -> list[str]:
        return sorted(k for keys in self.physical_keys(namespace, match).values() for k in keys)

    def entries(self, namespace: str, match: str = "*") -> dict[str, list[str]]:
        """Like ``physical_keys`` without freshcache's own keys (tokens, locks)."""
        reserved = f"{namespace}:__"
        return {
            address: [k for k in keys if not self.layout.logical(k).startswith(reserved)]
            for address, keys in self.physical_keys(namespace, match).items()
        }

    def raw_get(self, physical: str) -> bytes | None:
        """GET of a physical key on the primary that serves it."""
        value = self._on_owner(physical, "GET")
        assert value is None or isinstance(value, bytes)
        return value

    def raw_pttl(self, physical: str) -> int:
        ttl = self._on_owner(physical, "PTTL")
        assert isinstance(ttl, int)
        return ttl

    def _on_owner(self, physical: str, *command: str) -> bytes | int | None:
        slot_map = self.backend.topology.map
        assert slot_map is not None
        owner = slot_map.owners[self.layout.slot_of(physical.encode())]
        assert owner is not None
        result: bytes | int | None = self.client(owner).execute_command(  # type: ignore[no-untyped-call]
            command[0], physical, *command[1:]
        )
        return result

    def cleanup(self, namespace: str) -> None:
        """Delete every key of ``namespace`` on every primary (never FLUSHALL: may be shared)."""
        for address, keys in self.physical_keys(namespace).items():
            for key in keys:
                self.client(address).unlink(key)

    # -- command counters

    def commandstats(self) -> dict[str, collections.Counter[str]]:
        """Calls per command on each primary, e.g. ``{"127.0.0.1:7000": {"mget": 12, ...}}``."""
        stats: dict[str, collections.Counter[str]] = {}
        for address in self.primaries():
            info = self.client(address).info("commandstats")
            stats[address] = collections.Counter(
                {
                    name.removeprefix("cmdstat_").lower(): int(fields["calls"])
                    for name, fields in info.items()
                }
            )
        return stats

    def close(self) -> None:
        self.backend.close()
        for client in self._clients.values():
            client.close()


def delta(
    before: dict[str, collections.Counter[str]],
    after: dict[str, collections.Counter[str]],
    ignore: Iterable[str] = NOT_OURS,
) -> dict[str, collections.Counter[str]]:
    """Commands executed between two ``commandstats()`` snapshots, per node, without ours."""
    skipped = set(ignore)
    out: dict[str, collections.Counter[str]] = {}
    for address, counts in after.items():
        diff = counts - before.get(address, collections.Counter())
        out[address] = collections.Counter(
            {name: n for name, n in diff.items() if name not in skipped}
        )
    return out
