"""A private Redis Cluster of RedisServer nodes: create, inspect, kill a primary, wait for
the failover or for the replicas to catch up."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .process import (
    HOST,
    ManagedServer,
    ServerStartError,
    find_free_cluster_port,
    track,
    untrack,
    which_or_none,
)
from .redis_server import RedisServer
from .resp import RedisReplyError, info_fields

CLUSTER_SLOTS = 16384


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of CLUSTER NODES, as seen by one node."""

    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    master_id: str
    link_state: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    nodes: list[ClusterNodeInfo] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split(",")[0].split("@")[0]
        host, _, port = address.rpartition(":")
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        nodes.append(
            ClusterNodeInfo(
                node_id=parts[0],
                host=host,
                port=int(port) if port.isdigit() else 0,
                flags=frozenset(parts[2].split(",")),
                master_id=parts[3],
                link_state=parts[7],
                slots=tuple(slots),
            )
        )
    return nodes


class RedisCluster(ManagedServer):
    """A private Redis Cluster: `primaries` primaries with `replicas` replicas each.

    Nodes are RedisServer processes with `cluster-enabled yes`, joined with
    `redis-cli --cluster create`. `cluster-node-timeout` is short (1500 ms), so a failover
    after kill_primary_for_slot() takes a few seconds, and `cluster-replica-validity-factor 0`
    lets any replica take over however long ago it last heard from its primary.
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        host: str = HOST,
        node_timeout_ms: int = 1500,
        executable: str | None = None,
        cli: str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.host = host
        self.primary_count = primaries
        self.replicas_per_primary = replicas
        self.node_timeout_ms = node_timeout_ms
        self.executable = executable
        self.cli = cli
        self.start_timeout = start_timeout
        self.nodes: list[RedisServer] = []
        self._seeds: list[tuple[str, int]] = []
        self._killed_slots: set[int] = set()

    @property
    def url(self) -> str:
        """`redis+cluster://h:p1,h:p2,h:p3`: the primaries when the cluster was created."""
        seeds = self._seeds or [n.address for n in self.nodes[: self.primary_count]]
        if not seeds:
            raise RuntimeError("the cluster has not been started")
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in seeds)

    @property
    def running(self) -> bool:
        return any(node.running for node in self.nodes)

    def _live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running and not node.paused]

    def start(self) -> None:
        if self.running:
            return
        cli = self.cli or which_or_none("redis-cli")
        if cli is None:
            raise ServerStartError("redis-cli not found on PATH (needed to create the cluster)")
        track(self)
        try:
            self.nodes = []
            total = self.primary_count * (1 + self.replicas_per_primary)
            for _ in range(total):
                node = RedisServer(
                    host=self.host,
                    executable=self.executable,
                    port_factory=find_free_cluster_port,
                    args={
                        "cluster-enabled": "yes",
                        "cluster-config-file": "nodes.conf",
                        "cluster-node-timeout": str(self.node_timeout_ms),
                        "cluster-replica-validity-factor": "0",
                        "cluster-require-full-coverage": "yes",
                        # Replicas sync at once instead of after the default 5 s wait for
                        # more replicas to share one diskless transfer.
                        "repl-diskless-sync-delay": "0",
                    },
                )
                node.start()
                self.nodes.append(node)
            argv = [cli, "--cluster", "create"]
            argv += [f"{n.host}:{n.port}" for n in self.nodes]
            argv += ["--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"]
            created = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.start_timeout,
                check=False,
            )
            if created.returncode != 0:
                raise ServerStartError(
                    f"redis-cli --cluster create failed ({created.returncode}):\n"
                    f"{created.stdout}\n{created.stderr}"
                )
            self._wait(self._startup_problem, self.start_timeout, "the cluster to form")
            self._seeds = self.primaries()
            self._killed_slots.clear()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self._killed_slots.clear()
        untrack(self)

    # -- views

    def cluster_nodes(self, via: RedisServer | None = None) -> list[ClusterNodeInfo]:
        """CLUSTER NODES as seen by `via` (default: the first live node)."""
        node = via or next(iter(self._live()), None)
        if node is None:
            raise RuntimeError("no live cluster node")
        return parse_cluster_nodes(str(node.command("CLUSTER", "NODES")))

    def primaries(self) -> list[tuple[str, int]]:
        """Addresses of the live primaries that serve slots, in slot order."""
        serving = [n for n in self.cluster_nodes() if n.is_primary and n.slots and not n.failed]
        serving.sort(key=lambda n: n.slots[0][0])
        return [(n.host, n.port) for n in serving]

    def replica_of(self, primary: str) -> RedisServer:
        """A live replica of the primary at ``primary`` ("host:port")."""
        view = self.cluster_nodes()
        primary_id = next(n.node_id for n in view if f"{n.host}:{n.port}" == primary)
        port = next(n.port for n in view if n.master_id == primary_id and not n.failed)
        return next(node for node in self.nodes if node.port == port)

    def node_for_slot(self, slot: int) -> RedisServer:
        for info in self.cluster_nodes():
            if info.is_primary and not info.failed and info.owns(slot):
                for node in self.nodes:
                    if node.port == info.port:
                        return node
        raise LookupError(f"no live primary serves slot {slot}")

    # -- faults

    def kill_primary_for_slot(self, slot: int) -> tuple[str, int]:
        """SIGKILL the primary that serves `slot`; returns its address."""
        if not 0 <= slot < CLUSTER_SLOTS:
            raise ValueError(f"slot {slot} is not in 0..{CLUSTER_SLOTS - 1}")
        node = self.node_for_slot(slot)
        node.kill()
        self._killed_slots.add(slot)
        return node.address

    def wait_for_failover(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok with all slots served, and every slot
        whose primary was killed is served by a live primary in every live node's view."""
        self._wait(self._failover_problem, timeout, "the failover")
        self._killed_slots.clear()

    def wait_for_replication(self, timeout: float = 10.0) -> None:
        """Until every live replica has applied all that its live primary has written
        (replication offsets), so that a write made before now survives a failover."""
        self._wait(self._replication_problem, timeout, "the replicas to catch up")

    # -- health checks: each returns None when healthy, else what is still wrong

    def _replication_problem(self) -> str | None:
        live = {node.port: node for node in self._live()}
        view = self.cluster_nodes()
        by_id = {info.node_id: info for info in view}
        for info in view:
            primary = by_id.get(info.master_id)
            if "slave" not in info.flags or info.port not in live or primary is None:
                continue
            if primary.port not in live:
                continue
            wrote = info_fields(live[primary.port].command("INFO", "replication"))
            applied = info_fields(live[info.port].command("INFO", "replication"))
            behind = int(wrote.get("master_repl_offset", "0")) - int(
                applied.get("slave_repl_offset", "-1")
            )
            if behind > 0:
                return f"replica {info.port} is {behind} bytes behind {primary.port}"
        return None

    def _common_problem(self, node: RedisServer) -> str | None:
        info = info_fields(node.command("CLUSTER", "INFO", timeout=1.0))
        if info.get("cluster_state") != "ok":
            return f"{node.port}: cluster_state={info.get('cluster_state')}"
        for field in ("cluster_slots_assigned", "cluster_slots_ok"):
            if info.get(field) != str(CLUSTER_SLOTS):
                return f"{node.port}: {field}={info.get(field)}"
        return None

    def _startup_problem(self) -> str | None:
        replicas = self.primary_count * self.replicas_per_primary
        for node in self.nodes:
            problem = self._common_problem(node)
            if problem:
                return problem
            view = self.cluster_nodes(node)
            primaries = [n for n in view if n.is_primary and n.slots and not n.failed]
            followers = [n for n in view if "slave" in n.flags and not n.failed]
            if len(primaries) != self.primary_count or len(followers) != replicas:
                return f"{node.port}: sees {len(primaries)} primaries, {len(followers)} replicas"
            replication = info_fields(node.command("INFO", "replication", timeout=1.0))
            if replication.get("role") == "slave" and (
                replication.get("master_link_status") != "up"
            ):
                return f"{node.port}: replica link {replication.get('master_link_status')}"
        return None

    def _failover_problem(self) -> str | None:
        live = self._live()
        live_ports = {node.port for node in live}
        for node in live:
            problem = self._common_problem(node)
            if problem:
                return problem
            view = self.cluster_nodes(node)
            for slot in self._killed_slots:
                owners = [n for n in view if n.is_primary and not n.failed and n.owns(slot)]
                if not owners or owners[0].port not in live_ports:
                    owner = owners[0].port if owners else None
                    return f"{node.port}: slot {slot} is served by {owner}, not a live node"
        return None

    def _wait(self, problem: Callable[[], str | None], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last: str | None = "not checked yet"
        while time.monotonic() < deadline:
            try:
                last = problem()
            except (OSError, RedisReplyError, RuntimeError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if last is None:
                return
            time.sleep(0.05)
        nodes = ""
        with contextlib.suppress(Exception):
            nodes = str(next(iter(self._live())).command("CLUSTER", "NODES"))
        raise TimeoutError(
            f"timed out after {timeout:.0f} s waiting for {what}: {last}\nCLUSTER NODES:\n{nodes}"
        )

    def __iter__(self) -> Iterator[RedisServer]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        ports = ",".join(str(n.port) for n in self.nodes)
        return f"<RedisCluster {self.host}:{ports} running={self.running}>"


def start_redis_cluster() -> RedisCluster:
    """Start a private 3-primary, 3-replica cluster and wait until it serves all slots."""
    cluster = RedisCluster()
    cluster.start()
    return cluster
