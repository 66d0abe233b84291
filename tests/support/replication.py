"""A real primary + replica pair, with replication that can be partitioned and a failover
behind a stable client address.

    primary <── link proxy ── replica         (the replica replicates through `link`)
       ^
    front proxy  <── clients (`pair.url`)     (after failover(): front -> replica)

`partition()` blackholes the replication link, so writes acknowledged by the primary never
reach the replica; `failover()` promotes the replica (`REPLICAOF NO ONE`), points the front
address at it (open connections are reset, clients reconnect to the same address) and stops
the primary: exactly a failover to a replica that missed writes.
"""

from __future__ import annotations

import time

from .process import HOST, ManagedServer
from .proxy import FaultProxy
from .redis_server import RedisServer


class ReplicatedRedis(ManagedServer):
    def __init__(self, *, host: str = HOST) -> None:
        self.host = host
        self.primary = RedisServer(host=host)
        # Sync at once, and keep a partitioned link open for the whole test (no timeout).
        self.replica = RedisServer(
            host=host, args={"repl-diskless-sync-delay": "0", "repl-timeout": "3600"}
        )
        self._link: FaultProxy | None = None
        self._front: FaultProxy | None = None
        self.failed_over = False

    @property
    def url(self) -> str:
        """The address clients use: the primary, and after failover() the promoted replica."""
        return self.front.url

    @property
    def front(self) -> FaultProxy:
        if self._front is None:
            raise RuntimeError("the pair is not started")
        return self._front

    @property
    def link(self) -> FaultProxy:
        if self._link is None:
            raise RuntimeError("the pair is not started")
        return self._link

    def start(self) -> None:
        if self._front is not None:
            return
        try:
            self.primary.start()
            self._link = FaultProxy(self.primary.host, self.primary.port).start()
            self.replica.start()
            self.replica.command("REPLICAOF", self._link.host, str(self._link.port))
            self._front = FaultProxy(self.primary.host, self.primary.port).start()
            self.wait_for_sync()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proxy in (self._front, self._link):
            if proxy is not None:
                proxy.close()
        self._front = self._link = None
        self.replica.stop()
        self.primary.stop()
        self.failed_over = False

    def replica_lag(self) -> int | None:
        """Bytes the replica has not applied yet (None while its link is not up)."""
        replica = self.replica.info("replication")
        if replica.get("master_link_status") != "up":
            return None
        written = int(self.primary.info("replication")["master_repl_offset"])
        return written - int(replica.get("slave_repl_offset", "-1"))

    def wait_for_sync(self, timeout: float = 30.0) -> None:
        """Until the replica's link is up and it has applied everything the primary wrote."""
        deadline = time.monotonic() + timeout
        while True:
            lag = self.replica_lag()
            if lag is not None and lag <= 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the replica did not catch up within {timeout:.0f} s (lag {lag})"
                )
            time.sleep(0.01)

    def partition(self) -> None:
        """Blackhole the replication link: the primary keeps acknowledging writes, the
        replica never sees them (held bytes are dropped by the failover)."""
        self.link.set_mode("blackhole")

    def heal(self) -> None:
        self.link.set_mode("pass")

    def failover(self, *, stop_primary: bool = True) -> None:
        """Promote the replica and point the front address at it."""
        self.replica.command("REPLICAOF", "NO", "ONE")
        self.link.set_mode("refuse")  # nothing held for the old link is delivered late
        self.front.retarget(self.replica.host, self.replica.port)
        if stop_primary:
            self.primary.stop()
        self.failed_over = True

    def __repr__(self) -> str:
        return (
            f"<ReplicatedRedis primary={self.primary.port} replica={self.replica.port} "
            f"front={self._front.port if self._front else None} failed_over={self.failed_over}>"
        )


def start_replicated_redis() -> ReplicatedRedis:
    """Start a primary + replica pair and wait until the replica is in sync (stop() it)."""
    pair = ReplicatedRedis()
    pair.start()
    return pair
