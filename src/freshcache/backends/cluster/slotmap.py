"""The slot map: which primary serves each slot, read from CLUSTER SLOTS and CLUSTER NODES
replies (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from freshcache.backends.cluster.layout import CLUSTER_SLOTS
from freshcache.backends.cluster.settings import join_address, split_address

log = logging.getLogger("freshcache")


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
            addresses.append(
                join_address(host if host not in ("", "?") else asked_host, int(node[1]))
            )
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


def slot_map_of(replies: Any, address: str) -> SlotMap:
    """The map from one node's CLUSTER SLOTS and CLUSTER NODES replies (the latter may be
    refused, e.g. renamed on a managed service: replicas are then counted from the former)."""
    slots, nodes = replies
    if isinstance(slots, BaseException):
        raise slots
    if isinstance(nodes, BaseException):
        log.debug("freshcache: CLUSTER NODES failed on %s (%s); counting replicas from CLUSTER "
                  "SLOTS", address, nodes)  # fmt: skip
        nodes = None
    return parse_cluster_slots(slots, split_address(address)[0], nodes)
