"""A Redis Cluster primary that came back with older data: restarted from a snapshot taken
before the last invalidations (real BGSAVE, restart from that dump.rdb), or replaced by a
replica that missed a bump (paused while its primary took it, then promoted). Token copies
live on every shard, so either brings old tokens back next to old entries on that shard. The
cache checks the serving primaries' identities on (re)connect against the ones stored with
the namespace and starts a fresh generation before serving, in the process that saw the old
primary and in one that never did."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_helpers import ClusterView

from freshcache import Cache
from support import require
from support.cluster import RedisCluster
from support.redis_server import RedisServer

ROOMS = range(12)
#: Bounds the waits for the cluster to settle; never a verdict about speed.
PATIENCE = 60.0


class Versions:
    """The database: a version per room, bumped by writes."""

    def __init__(self) -> None:
        self.version = dict.fromkeys(ROOMS, 1)

    def bump_all(self) -> None:
        for room in ROOMS:
            self.version[room] += 1


def reader(cache: Cache, db: Versions) -> Callable[[int], object]:
    @cache.cached(ttl=300, key_prefix="room")
    async def read(room: int) -> int:
        return db.version[room]

    return read


async def read_all(read: Callable[[int], object]) -> list[int]:
    return [await read(room) for room in ROOMS]  # type: ignore[misc]


def node_at(cluster: RedisCluster, address: str) -> RedisServer:
    host, _, port = address.rpartition(":")
    return next(node for node in cluster.nodes if node.host == host and node.port == int(port))


def primary_of_room(view: ClusterView, read: object) -> str:
    key = read.key_for(ROOMS[0])  # type: ignore[attr-defined]
    return view.owner_of_shard(view.layout.shard_of(key))


def wait_until(check: Callable[[], bool], what: str) -> None:
    stop = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > stop:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def cluster_ok(cluster: RedisCluster) -> bool:
    try:
        states = [str(n.command("CLUSTER", "INFO")) for n in cluster.nodes if n.running]
    except OSError:
        return False
    return bool(states) and all("cluster_state:ok" in state for state in states)


@pytest.fixture
def lone_primaries() -> Iterator[RedisCluster]:
    """Three primaries without replicas: a restarted primary comes back as itself (no replica
    can take over while it is down)."""
    require("redis-server", "redis-cli")
    with RedisCluster(replicas=0) as cluster:
        yield cluster


@pytest.fixture
def replicated() -> Iterator[RedisCluster]:
    require("redis-server", "redis-cli")
    with RedisCluster() as cluster:
        yield cluster


async def test_a_primary_restarted_from_an_older_snapshot_serves_nothing_stale(
    lone_primaries: RedisCluster, tmp_path: Path
) -> None:
    db = Versions()
    url = lone_primaries.url
    view = ClusterView(url)
    writer = Cache.from_url(url, namespace="older", timeout=2.0)
    read = reader(writer, db)
    try:
        assert await read_all(read) == [1] * len(ROOMS)
        primary = node_at(lone_primaries, primary_of_room(view, read))
        dump = primary.save_snapshot(tmp_path / "dump.rdb")  # its entries and tokens at v1
        db.bump_all()
        await writer.invalidate("room:*")
        assert await read_all(read) == [2] * len(ROOMS)

        # The old entries and the old copies of the tokens are back on that shard.
        primary.restart_from_snapshot(dump, keep=("nodes.conf",))
        wait_until(lambda: cluster_ok(lone_primaries), "the restarted primary rejoined")

        newcomer = Cache.from_url(url, namespace="older", timeout=2.0)
        try:
            assert await read_all(reader(newcomer, db)) == [2] * len(ROOMS)  # never saw v1
        finally:
            await newcomer.aclose()
        # The first read may run uncached (the reconnect); none is stale.
        assert [await read(room) for room in ROOMS for _ in range(2)] == [2] * 2 * len(ROOMS)  # type: ignore[misc]
        assert writer.health()["server_verified"] is True
    finally:
        await writer.aclose()
        view.close()


async def test_a_replica_promoted_after_missing_a_bump_serves_nothing_stale(
    replicated: RedisCluster,
) -> None:
    """The replica is paused (SIGSTOP) and cut off while its primary takes the bump, so the
    WAIT fails and the writer keeps the invalidation; the writer then exits without replaying
    it, the primary dies, and the replica that never got the bump is promoted. Another
    process, which had the old values cached, must not read them from the promoted replica."""
    db = Versions()
    url = replicated.url
    view = ClusterView(url)
    options = {"timeout": 0.5, "breaker_threshold": 100}
    writer = Cache.from_url(url, namespace="promoted", **options)
    other = Cache.from_url(url, namespace="promoted", timeout=2.0)
    read_elsewhere = reader(other, db)
    try:
        read = reader(writer, db)
        assert await read_all(read) == [1] * len(ROOMS)
        assert await read_all(read_elsewhere) == [1] * len(ROOMS)  # cached on every shard
        address = primary_of_room(view, read)
        primary, replica = node_at(replicated, address), replicated.replica_of(address)
        replicated.wait_for_replication()  # the replica holds the v1 entries and tokens

        replica.pause()
        # Cut its replication link too: what the primary sent before is in the paused
        # replica's socket buffer and would still be applied after SIGCONT; the bump is not.
        primary.command("CLIENT", "KILL", "TYPE", "replica")
        try:
            db.bump_all()
            await writer.invalidate("room:*")  # the paused replica acknowledges nothing
            assert writer.health()["pending_invalidations"] == 1
            # The writer goes away with it kept (flush_timeout=0: one try, not acknowledged).
            await writer.aclose(flush_timeout=0)
            slot = view.layout.slots[view.layout.shard_of(read.key_for(ROOMS[0]))]  # type: ignore[attr-defined]
            replicated.kill_primary_for_slot(slot)
        finally:
            replica.resume()
        assert not primary.running
        replicated.wait_for_failover()  # the replica that missed the bump now serves

        assert await read_all(read_elsewhere) == [2] * len(ROOMS)
        assert await read_all(read_elsewhere) == [2] * len(ROOMS)
        assert other.health()["server_verified"] is True
        assert other.health()["new_generations"] >= 1
    finally:
        await writer.aclose(flush_timeout=0)
        await other.aclose(flush_timeout=0.5)
        view.close()


async def test_a_takeover_learnt_only_from_moved_serves_nothing_stale(
    replicated: RedisCluster,
) -> None:
    """No connection of the reading process ever fails: the primary stays up and is demoted
    by ``CLUSTER FAILOVER TAKEOVER`` on its replica, which missed the bump (paused and cut off
    while its primary took it; the takeover is queued on its socket before it resumes, so it
    runs before the replica can resync). The reader learns of the new owner from a MOVED
    reply only; it must not follow it into the old entries under the old tokens."""
    db = Versions()
    url = replicated.url
    view = ClusterView(url)
    writer = Cache.from_url(url, namespace="takeover", timeout=0.5, breaker_threshold=100)
    other = Cache.from_url(url, namespace="takeover", timeout=2.0)
    read_elsewhere = reader(other, db)
    try:
        read = reader(writer, db)
        assert await read_all(read) == [1] * len(ROOMS)
        assert await read_all(read_elsewhere) == [1] * len(ROOMS)
        address = primary_of_room(view, read)
        primary, replica = node_at(replicated, address), replicated.replica_of(address)
        replicated.wait_for_replication()

        replica.pause()
        takeover: list[object] = []
        try:
            primary.command("CLIENT", "KILL", "TYPE", "replica")
            db.bump_all()
            await writer.invalidate("room:*")  # the paused replica acknowledges nothing
            await writer.aclose(flush_timeout=0)
            asker = threading.Thread(
                target=lambda: takeover.append(
                    replica.command("CLUSTER", "FAILOVER", "TAKEOVER", timeout=30.0)
                )
            )
            asker.start()
            time.sleep(0.2)  # the command is in the paused replica's socket
        finally:
            replica.resume()
        asker.join(60)
        assert takeover, "CLUSTER FAILOVER TAKEOVER got no answer"
        wait_until(
            lambda: "role:master" in str(replica.command("INFO", "replication")),
            "the replica took over",
        )
        wait_until(lambda: cluster_ok(replicated), "the cluster settled")
        assert primary.running  # nothing failed: the old primary is a replica now

        assert await read_all(read_elsewhere) == [2] * len(ROOMS)
        assert await read_all(read_elsewhere) == [2] * len(ROOMS)
        assert other.health()["server_verified"] is True
    finally:
        await writer.aclose(flush_timeout=0)
        await other.aclose(flush_timeout=0.5)
        view.close()
