"""What one side (a loop, or the threads of the sync backend) knows about the cluster, and the
policy that keeps it current: when to read the slot map again, whom to ask, how many replicas
an invalidation waits for, where a redirection goes."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions

from freshcache.backends.base import BackendError
from freshcache.backends.cluster.errors import (
    MALFORMED,
    TOPOLOGY_ERRORS,
    classify,
    redirect_target,
)
from freshcache.backends.cluster.layout import CLUSTER_SLOTS
from freshcache.backends.cluster.slotmap import SlotMap, slot_map_of

log = logging.getLogger("freshcache")

#: MOVED then ASK (a slot that moved and is being migrated again) is the longest legitimate
#: chain; anything longer is a cluster in flux, and the breaker is the better judge of it.
MAX_REDIRECTS = 2
#: At most one topology refresh per interval, however many calls fail meanwhile.
REFRESH_INTERVAL = 0.05
#: Invalidations read the slot map again when it is older than this (seconds).
MAP_MAX_AGE = 30.0
#: A node that failed is asked for the topology last, for this long.
SUSPECT_SECONDS = 10.0


def wait_ms(timeout: float) -> int:
    """WAIT's own deadline, a little inside the socket's (the server checks it on its cron,
    10 Hz by default, so the socket may still give up first: a timeout either way)."""
    return max(1, int(timeout * 800))


def no_callback() -> None:
    return None


class Topology:
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
        #: Called when a slot's owner changes (a failover, a resharding), with no failure seen:
        #: the cache re-checks the servers' identities before its next read.
        self.on_change: Callable[[], None] = no_callback

    # -- the slot map

    def install(self, slot_map: SlotMap) -> None:
        previous = self.map
        changed = previous is not None and previous.owners != slot_map.owners
        self.map, self.owners, self.stale = slot_map, slot_map.owners, False
        self.installed_at = self.clock()
        self.refreshes += 1
        if previous is not None and not set(slot_map.serving()) <= set(previous.primaries):
            self.on_change()  # a node that was not a primary serves slots now: a failover
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

    def owner(self, slot: int) -> str:
        owners = self.owners
        if owners is None:
            raise BackendError("connection", "no Redis Cluster node answered CLUSTER SLOTS yet")
        address = owners[slot]
        if address is None:
            self.stale = True
            raise BackendError("server", f"slot {slot} is not served by any node")
        return address

    def serving(self) -> tuple[str, ...]:
        """The primaries that serve a slot (where SCAN and PING go)."""
        self.owner(0)  # raises if there is no map at all
        assert self.map is not None
        return self.map.serving()

    # -- redirections and failures

    def moved(self, exc: redis.exceptions.AskError, current: str) -> str:
        target = redirect_target(exc, current)
        promoted = False
        if self.map is not None and 0 <= exc.slot_id < CLUSTER_SLOTS:
            # A slot handed to a node that was not a primary (a replica, or a node unknown to
            # the map) is a failover; one handed to another primary is a resharding.
            promoted = target not in self.map.primaries
            self.map = self.map.moved(exc.slot_id, target)
            self.owners = self.map.owners
        self.stale = True  # one slot moved: others may have too (a failover, a resharding)
        if promoted:
            # A new primary serves the slot, and nothing failed: it may be a replica promoted
            # after missing some writes. This call does not follow it (its answer
            # could predate an invalidation); the cache re-checks the servers first.
            self.on_change()
            raise BackendError(
                "connection", f"slot {exc.slot_id} moved to {target}; re-checking the servers"
            )
        return target

    def redirected(self, exc: redis.exceptions.AskError, current: str) -> tuple[str, bool]:
        """Where to send again a command that ``current`` answered with MOVED or ASK
        (MovedError is a kind of AskError in redis-py), and whether to send ASKING first."""
        if isinstance(exc, redis.exceptions.MovedError):
            return self.moved(exc, current), False
        return redirect_target(exc, current), True

    def too_many_redirects(self, slot: int) -> BackendError:
        self.stale = True
        return BackendError("server", f"slot {slot}: more than {MAX_REDIRECTS} redirections")

    def failed(self, exc: BaseException, address: str | None) -> BackendError:
        if isinstance(exc, TOPOLOGY_ERRORS):
            self.stale = True
            if address is not None and not isinstance(exc, redis.exceptions.ResponseError):
                self.suspects[address] = self.clock()
        return classify(exc)

    # -- replicas

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

    # -- refreshing the map

    def refresh_due(self) -> bool:
        # Also without a map: when no node answers, each call must not try them all again.
        return self.clock() - self.last_refresh >= REFRESH_INTERVAL

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

    def begin_refresh(self) -> list[str]:
        """A refresh starts: the candidates to ask, one after the other."""
        self.last_refresh = self.clock()
        return self.candidates()

    def answered(self, address: str, replies: Any) -> None:
        """``address`` answered the topology query (see ``routing.queue_topology_query``)."""
        self.install(slot_map_of(replies, address))

    def unanswered(self, address: str, exc: BaseException) -> None:
        """``address`` could not tell the topology (one of ``errors.REFRESH_ERRORS``)."""
        if not isinstance(exc, (redis.exceptions.ResponseError, *MALFORMED)):
            self.suspects[address] = self.clock()

    def unrefreshed(self, last: BaseException | None) -> None:
        log.debug("freshcache: no Redis Cluster node answered CLUSTER SLOTS: %s", last)
