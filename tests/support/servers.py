"""Private Redis, Redis Cluster and PostgreSQL servers for tests.

Every server runs as a child process of the test run, on a free port of 127.0.0.1, with its
data in its own temporary directory, and is stopped by `stop()`, by its context manager, or
at interpreter exit (an `atexit` guard). On Linux, servers started from the main thread also
get PR_SET_PDEATHSIG=SIGKILL, so a test run killed with SIGKILL does not leave them behind.

Nothing here talks to the system services on the default ports (6379, 5432); nothing here
needs redis-py or a PostgreSQL driver: readiness checks speak the wire protocols directly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

__all__ = [
    "HOST",
    "PostgresError",
    "PostgresServer",
    "RedisCluster",
    "RedisReplyError",
    "RedisServer",
    "ServerStartError",
    "find_free_port",
    "postgres_os_user",
    "postgres_version",
    "redis_command",
    "redis_server_version",
    "start_postgres",
    "start_redis",
    "start_redis_cluster",
    "which_or_none",
]

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384


class ServerStartError(RuntimeError):
    """A server process could not be started or never became ready."""


class RedisReplyError(RuntimeError):
    """Redis answered a command with an error reply (`-ERR ...`)."""


class PostgresError(RuntimeError):
    """PostgreSQL answered with an ErrorResponse; the message starts with the SQLSTATE."""


# --------------------------------------------------------------------------------------------
# Process bookkeeping: an atexit guard, and the parent-death signal.


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_LIVE: set[_Stoppable] = set()
_LIVE_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _track(obj: _Stoppable) -> None:
    global _ATEXIT_REGISTERED
    with _LIVE_LOCK:
        if not _ATEXIT_REGISTERED:
            atexit.register(_stop_all)
            _ATEXIT_REGISTERED = True
        _LIVE.add(obj)


def _untrack(obj: _Stoppable) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(obj)


def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for obj in live:
        # At exit, one server that refuses to stop must not keep the others running.
        with contextlib.suppress(Exception):
            obj.stop()


_PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return fn


def _child_setup() -> Callable[[], None] | None:
    """A preexec_fn that makes the child die with us, or None where that is not possible.

    The parent-death signal fires when the *thread* that forked the child exits, so it is
    only set for children started from the main thread (a server started in a worker thread
    would otherwise die with that thread). CPython runs preexec_fn after setuid/setgid, which
    matters: a credential change clears the parent-death signal.
    """
    prctl = _prctl()  # resolved in the parent: the child only makes one plain call
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def _spawn(
    argv: list[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    user: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        if user is None:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                process_group=0,  # a Ctrl-C in the terminal is for pytest, not the servers
                preexec_fn=_child_setup(),  # only prctl: see _child_setup
            )
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            process_group=0,
            preexec_fn=_child_setup(),
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
        )


def _end_process(proc: subprocess.Popen[bytes], *signals: tuple[int, float]) -> None:
    """Wait for `proc`, sending each (signal, grace seconds) in turn; SIGKILL as the last resort."""
    for sig, grace in signals:
        if proc.poll() is not None:
            break
        if sig:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


def _log_tail(path: Path | None, lines: int = 25) -> str:
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (log is empty)"


# --------------------------------------------------------------------------------------------
# Ports and executables.


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (servers retry if they lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _find_free_cluster_port() -> int:
    """A free port P whose cluster bus port P+10000 is free too (works on every Redis version)."""
    for _ in range(200):
        port = find_free_port()
        if port + 10000 <= 65535 and _port_is_free(port + 10000):
            return port
    raise ServerStartError("no free port P with P+10000 free on 127.0.0.1")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def which_or_none(name: str) -> str | None:
    """`shutil.which(name)`, then the places where packages put server binaries off PATH.

    /usr/lib/postgresql/*/bin (Debian/Ubuntu; newest version first), /usr/local/bin, /usr/sbin.
    """
    found = shutil.which(name)
    if found:
        return found
    pg_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for directory in [*pg_dirs, "/usr/local/bin", "/usr/sbin"]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _version_of(executable: str, pattern: str) -> str | None:
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, out)
    return match.group(1) if match else None


@cache
def redis_server_version(executable: str | None = None) -> str | None:
    """'7.0.15' for the redis-server found (or given), None if there is none."""
    exe = executable or which_or_none("redis-server")
    return _version_of(exe, r"v=(\d[\w.]*)") if exe else None


@cache
def postgres_version(executable: str | None = None) -> str | None:
    """'15.14' for the postgres found (next to initdb, or given), None if there is none."""
    exe = executable
    if exe is None:
        initdb = which_or_none("initdb")
        beside = (
            os.path.join(os.path.dirname(os.path.realpath(initdb)), "postgres") if initdb else ""
        )
        exe = beside if beside and os.path.exists(beside) else which_or_none("postgres")
    return _version_of(exe, r"\(PostgreSQL\)\s+(\d[\w.]*)") if exe else None


# --------------------------------------------------------------------------------------------
# A minimal RESP client (simple strings, errors, integers, bulk strings): enough for PING,
# INFO, CLUSTER INFO/NODES, SHUTDOWN, DBSIZE, SET/GET without depending on redis-py.


def _read_line(stream: BinaryIO) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    return line[:-2]


def _read_reply(stream: BinaryIO) -> str | int | None:
    line = _read_line(stream)
    kind, body = line[:1], line[1:].decode("utf-8", "replace")
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisReplyError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed in the middle of a reply")
        return data[:-2].decode("utf-8", "replace")
    raise ValueError(f"unsupported RESP reply type {kind!r} (arrays are not parsed here)")


def redis_command(host: str, port: int, *args: str, timeout: float = 2.0) -> str | int | None:
    """Send one command on a fresh connection and return its (non-array) reply."""
    encoded = [arg.encode() for arg in args]
    payload = b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb") as stream:
            return _read_reply(stream)


def _info_fields(text: str | int | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in str(text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


# --------------------------------------------------------------------------------------------
# Redis


class _Managed:
    """``with Server() as server:`` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(_Managed):
    """A private redis-server: 127.0.0.1, a free port, no persistence, data in a temp dir.

    `args` are extra configuration directives (`{"maxmemory": "10mb"}` -> `--maxmemory 10mb`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        args: Mapping[str, str] | None = None,
        executable: str | None = None,
        port_factory: Callable[[], int] = find_free_port,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self._port_factory = port_factory
        self.port: int = port if port is not None else port_factory()
        self.args: dict[str, str] = dict(args or {})
        self.executable = executable
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._paused = False
        self._started_once = False

    # -- properties

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The process exists (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def data_dir(self) -> Path | None:
        return self._dir

    @property
    def log_path(self) -> Path | None:
        return self._dir / "redis.log" if self._dir is not None else None

    @property
    def version(self) -> str | None:
        return redis_server_version(self.executable)

    # -- lifecycle

    def start(self) -> None:
        """Start the server and wait until it answers PING (bounded by `start_timeout`)."""
        if self.running:
            return
        self._cleanup()  # after a kill(): reap it and drop its data, so the start is fresh
        exe = self.executable or which_or_none("redis-server")
        if exe is None:
            raise ServerStartError("redis-server not found on PATH")
        # A port picked by us may be taken by someone else before redis binds it: pick again.
        # A restart keeps its port, so that clients can reconnect to the same address.
        attempts = 3 if self._auto_port and not self._started_once else 1
        for attempt in range(attempts):
            try:
                self._start_once(exe)
            except ServerStartError as exc:
                lost_race = "Address already in use" in str(exc)
                self._cleanup()
                if lost_race and attempt + 1 < attempts:
                    self.port = self._port_factory()
                    continue
                raise
            self._started_once = True
            return

    def _start_once(self, exe: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix=f"freshcache-redis-{self.port}-"))
        argv = [
            exe,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        for key, value in self.args.items():
            argv += [f"--{key.replace('_', '-')}", value]
        assert self.log_path is not None
        self._proc = _spawn(argv, log_path=self.log_path, cwd=self._dir)
        _track(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"redis-server on {self.host}:{self.port} exited with code "
                    f"{self._proc.returncode} before answering PING; log tail:\n"
                    f"{_log_tail(self.log_path)}"
                )
            with contextlib.suppress(OSError, RedisReplyError):
                if redis_command(self.host, self.port, "PING", timeout=0.5) == "PONG":
                    return
            if time.monotonic() > deadline:
                _end_process(self._proc, (0, 0.0))
                raise ServerStartError(
                    f"redis-server on {self.host}:{self.port} did not answer PING within "
                    f"{self.start_timeout:.0f} s; log tail:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL; waits for the exit; removes the data."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if self._paused:
                self.resume()
            with contextlib.suppress(OSError, RedisReplyError, ValueError):
                redis_command(self.host, self.port, "SHUTDOWN", "NOSAVE", timeout=1.0)
            _end_process(proc, (0, 5.0), (signal.SIGTERM, 5.0))
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None:
            _end_process(self._proc, (0, 0.0))
        self._proc = None
        self._paused = False
        _untrack(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL, as a crash. The data directory stays until stop() or restart()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._paused = False

    def restart(self) -> None:
        """Stop (or clean up after a kill) and start again: same port, empty data."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung server)."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("redis-server is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def command(self, *args: str, timeout: float = 2.0) -> str | int | None:
        """One command over a fresh connection (no redis-py needed): `server.command("DBSIZE")`."""
        return redis_command(self.host, self.port, *args, timeout=timeout)

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state} pid={self.pid}>"


def start_redis(**redis_args: str) -> RedisServer:
    """Start a private redis-server with extra directives: `start_redis(maxmemory="10mb")`."""
    server = RedisServer(args=redis_args)
    server.start()
    return server


# --------------------------------------------------------------------------------------------
# Redis Cluster


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


def _parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
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


class RedisCluster(_Managed):
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
        _track(self)
        try:
            self.nodes = []
            total = self.primary_count * (1 + self.replicas_per_primary)
            for _ in range(total):
                node = RedisServer(
                    host=self.host,
                    executable=self.executable,
                    port_factory=_find_free_cluster_port,
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
        _untrack(self)

    # -- views

    def cluster_nodes(self, via: RedisServer | None = None) -> list[ClusterNodeInfo]:
        """CLUSTER NODES as seen by `via` (default: the first live node)."""
        node = via or next(iter(self._live()), None)
        if node is None:
            raise RuntimeError("no live cluster node")
        return _parse_cluster_nodes(str(node.command("CLUSTER", "NODES")))

    def primaries(self) -> list[tuple[str, int]]:
        """Addresses of the live primaries that serve slots, in slot order."""
        serving = [n for n in self.cluster_nodes() if n.is_primary and n.slots and not n.failed]
        serving.sort(key=lambda n: n.slots[0][0])
        return [(n.host, n.port) for n in serving]

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
            wrote = _info_fields(live[primary.port].command("INFO", "replication"))
            applied = _info_fields(live[info.port].command("INFO", "replication"))
            behind = int(wrote.get("master_repl_offset", "0")) - int(
                applied.get("slave_repl_offset", "-1")
            )
            if behind > 0:
                return f"replica {info.port} is {behind} bytes behind {primary.port}"
        return None

    def _common_problem(self, node: RedisServer) -> str | None:
        info = _info_fields(node.command("CLUSTER", "INFO", timeout=1.0))
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
            replication = _info_fields(node.command("INFO", "replication", timeout=1.0))
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


# --------------------------------------------------------------------------------------------
# PostgreSQL: a minimal frontend/backend protocol client (startup with trust auth, simple
# query), enough for readiness checks and CREATE DATABASE without a driver or psql.

_PG_PROTOCOL_3 = 196608


def _pg_read_message(stream: BinaryIO) -> tuple[bytes, bytes]:
    header = stream.read(5)
    if len(header) != 5:
        raise ConnectionError("connection closed by the server")
    (length,) = struct.unpack("!i", header[1:])
    body = stream.read(length - 4)
    if len(body) != length - 4:
        raise ConnectionError("connection closed in the middle of a message")
    return header[:1], body


def _pg_error_text(body: bytes) -> str:
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return f"{fields.get('C', '?????')}: {fields.get('M', 'unknown error')}"


def _pg_data_row(body: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!h", body[:2])
    offset = 2
    values: list[str | None] = []
    for _ in range(count):
        (size,) = struct.unpack("!i", body[offset : offset + 4])
        offset += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[offset : offset + size].decode("utf-8", "replace"))
            offset += size
    return tuple(values)


def _pg_query(
    host: str, port: int, user: str, database: str, sql: str | None, timeout: float
) -> list[tuple[str | None, ...]]:
    params = b"user\0%s\0database\0%s\0\0" % (user.encode(), database.encode())
    rows: list[tuple[str | None, ...]] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!ii", 8 + len(params), _PG_PROTOCOL_3) + params)
        with sock.makefile("rb") as stream:
            while True:  # authentication and parameter status, up to ReadyForQuery
                kind, body = _pg_read_message(stream)
                if kind == b"E":
                    raise PostgresError(_pg_error_text(body))
                if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                    raise PostgresError("the server asks for a password; expected trust auth")
                if kind == b"Z":
                    break
            if sql is not None:
                query = sql.encode() + b"\0"
                sock.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
                error: str | None = None
                while True:
                    kind, body = _pg_read_message(stream)
                    if kind == b"E":
                        error = _pg_error_text(body)
                    elif kind == b"D":
                        rows.append(_pg_data_row(body))
                    elif kind == b"Z":
                        break
                if error is not None:
                    raise PostgresError(error)
            sock.sendall(b"X" + struct.pack("!i", 4))
    return rows


def postgres_os_user() -> pwd.struct_passwd | None:
    """Who runs initdb and postgres: ourselves unless we are root (PostgreSQL refuses root).

    As root: $FRESHCACHE_TEST_PG_USER, else `nobody`, else `postgres`. `nobody` comes first
    on purpose: the cluster trusts every local TCP connection, and a superuser can run
    programs as the server's OS account (COPY ... FROM PROGRAM); as `nobody` that reaches
    nothing, as `postgres` it would reach the system's own PostgreSQL data.
    """
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("FRESHCACHE_TEST_PG_USER")
    for name in [wanted] if wanted else ["nobody", "postgres"]:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerStartError(
        "running as root, and no unprivileged user to run PostgreSQL as "
        f"(tried {wanted or 'nobody, postgres'}; set FRESHCACHE_TEST_PG_USER)"
    )


_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresServer(_Managed):
    """A private PostgreSQL cluster: initdb into a temp dir, postgres on 127.0.0.1:<free port>.

    Superuser `postgres`, trust authentication, fsync/synchronous_commit/full_page_writes off
    (nothing here needs to survive a power cut). As root, runs as an unprivileged OS user
    (see postgres_os_user).
    """

    superuser = "postgres"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        bindir: str | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self.port: int = port if port is not None else find_free_port()
        self.bindir = bindir
        self.settings: dict[str, str] = {
            "listen_addresses": host,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.start_timeout = start_timeout
        self.os_user: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        """`postgresql+asyncpg://postgres@127.0.0.1:PORT/DB`; `driver=""` for `postgresql://`."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.superuser}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """The plain libpq form, for asyncpg.connect() or psycopg."""
        return self.url(driver="")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._dir / "postgres.log" if self._dir is not None else None

    @property
    def version(self) -> str | None:
        postgres = self._binary("postgres", required=False)
        return postgres_version(postgres) if postgres else None

    def _binary(self, name: str, *, required: bool = True) -> str | None:
        bindir = self.bindir
        if bindir is None:
            initdb = which_or_none("initdb")
            bindir = os.path.dirname(os.path.realpath(initdb)) if initdb else None
        path = os.path.join(bindir, name) if bindir else which_or_none(name)
        if path and os.access(path, os.X_OK):
            return path
        if required:
            raise ServerStartError(f"{name} not found (looked in {bindir or 'PATH'})")
        return None

    def start(self) -> None:
        if self.running:
            return
        self.stop()  # after a crash: drop the old data directory first
        initdb = self._binary("initdb")
        postgres = self._binary("postgres")
        assert initdb is not None
        assert postgres is not None
        user = postgres_os_user()
        self.os_user = user.pw_name if user else None
        self._dir = Path(tempfile.mkdtemp(prefix="freshcache-pg-"))
        _track(self)
        try:
            if user is not None:
                os.chown(self._dir, user.pw_uid, user.pw_gid)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self._dir),
                "LC_ALL": "C",
                "LANG": "C",
            }
            data = self._dir / "data"
            assert self.log_path is not None
            init = _spawn(
                [initdb, "-D", str(data), "-U", self.superuser, "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync"],
                log_path=self.log_path, cwd=self._dir, env=env, user=user,
            )  # fmt: skip
            try:
                code = init.wait(self.start_timeout)
            except subprocess.TimeoutExpired:
                _end_process(init, (0, 0.0))
                code = -1
            if code != 0:
                raise ServerStartError(
                    f"initdb failed (exit {code}, as {self.os_user or 'ourselves'}); "
                    f"log tail:\n{_log_tail(self.log_path)}"
                )
            attempts = 3 if self._auto_port else 1
            for attempt in range(attempts):
                argv = [postgres, "-D", str(data), "-p", str(self.port), "-k", str(self._dir)]
                for key, value in self.settings.items():
                    argv += ["-c", f"{key}={value}"]
                self._proc = _spawn(argv, log_path=self.log_path, cwd=self._dir, env=env, user=user)
                try:
                    self._wait_ready()
                    return
                except ServerStartError as exc:
                    lost_race = "already in use" in str(exc)
                    _end_process(self._proc, (signal.SIGQUIT, 5.0))
                    self._proc = None
                    if lost_race and attempt + 1 < attempts:
                        self.port = find_free_port()
                        continue
                    raise
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        while True:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"postgres on {self.host}:{self.port} exited with code "
                    f"{self._proc.returncode}; log tail:\n{_log_tail(self.log_path)}"
                )
            try:
                _pg_query(self.host, self.port, self.superuser, "postgres", None, 1.0)
            except (OSError, PostgresError) as exc:
                last = str(exc)  # 57P03: the database system is starting up
            else:
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"postgres on {self.host}:{self.port} not ready within "
                    f"{self.start_timeout:.0f} s ({last}); log tail:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; removes the data."""
        if self._proc is not None:
            _end_process(self._proc, (signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0))
            self._proc = None
        _untrack(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[str | None, ...]]:
        """Run SQL with the simple query protocol; rows as tuples of text (None for NULL)."""
        return _pg_query(self.host, self.port, self.superuser, database, sql, 10.0)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (a plain identifier); returns its asyncpg URL."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} is not a plain identifier")
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state} pid={self.pid}>"


def start_postgres() -> PostgresServer:
    """Start a private PostgreSQL cluster and wait until it accepts connections."""
    server = PostgresServer()
    server.start()
    return server
