"""Faults that a real redis-server produces itself, for tests of what the cache does then.

- eviction: `start_evicting_redis(policy=...)` sets `maxmemory` and a `maxmemory-policy` at
  start, `set_eviction(server, ...)` at run time, `limit_memory(server, headroom, policy)`
  just above what the server already uses; `evicted_keys(server)` says how many went;
- OOM under `noeviction`: `fill_until_oom(server)` writes filler keys until Redis refuses
  writes (`-OOM`); reads and UNLINK still work, as on a full managed Redis;
- `pause_writes(server)`: `CLIENT PAUSE ... WRITE` for a `with` block (reads answer, writes
  wait until the block ends, then run);
- connections: `client_list(server)`, `count_connections(server, name=... | local_ports=...)`
  and `own_connection_ports(server)`, the local ports of this process's sockets to a server
  (read from /proc: freshcache never names its connections, so a port is how to tell them);
- `server_identity(server)`: run_id and replication id, which change on a restart or a
  failover (what the cache checks on connect).

BGSAVE and restart from an older dump.rdb are `RedisServer.save_snapshot` and
`RedisServer.restart_from_snapshot`; a primary + replica pair with a failover is
`replication.ReplicatedRedis`.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .redis_server import RedisServer
from .resp import RedisReplyError

EVICTION_POLICIES = ("allkeys-lru", "volatile-lru", "allkeys-random", "noeviction")
FILLER_PREFIX = "__filler__"


def _check_policy(policy: str) -> None:
    if policy not in EVICTION_POLICIES:
        raise ValueError(f"policy must be one of {EVICTION_POLICIES}, not {policy!r}")


def start_evicting_redis(maxmemory: str = "8mb", policy: str = "allkeys-lru") -> RedisServer:
    """A private redis-server started with `maxmemory` and `maxmemory-policy` (stop() it)."""
    _check_policy(policy)
    server = RedisServer(args={"maxmemory": maxmemory, "maxmemory-policy": policy})
    server.start()
    return server


def set_eviction(server: RedisServer, maxmemory: int | str, policy: str) -> None:
    """CONFIG SET maxmemory and maxmemory-policy on a running server."""
    _check_policy(policy)
    server.command("CONFIG", "SET", "maxmemory", str(maxmemory))
    server.command("CONFIG", "SET", "maxmemory-policy", policy)


def eviction_settings(server: RedisServer) -> tuple[int, str]:
    """(maxmemory in bytes, maxmemory-policy) as the server reports them."""
    memory = server.info("memory")
    return int(memory["maxmemory"]), memory["maxmemory_policy"]


def used_memory(server: RedisServer) -> int:
    return int(server.info("memory")["used_memory"])


def evicted_keys(server: RedisServer) -> int:
    """Keys evicted since the server started (INFO stats)."""
    return int(server.info("stats")["evicted_keys"])


def limit_memory(server: RedisServer, headroom: int, policy: str) -> int:
    """Set maxmemory to what the server uses now plus `headroom` bytes; returns the limit.

    An empty redis-server already uses about a megabyte, so a fixed small `maxmemory` would
    mean "full" before the first write, or never full, depending on the build.
    """
    limit = used_memory(server) + headroom
    set_eviction(server, limit, policy)
    return limit


def fill_until_oom(
    server: RedisServer, *, value_bytes: int = 16 * 1024, max_keys: int = 100_000
) -> int:
    """Write `__filler__:n` keys until Redis answers `-OOM`; returns how many it took.
    Afterwards every write is refused (-OOM) and reads, DEL and UNLINK are served.

    Needs `maxmemory-policy noeviction` and a `maxmemory` (see limit_memory): under any other
    policy Redis evicts instead of refusing, and this raises rather than loop for ever.
    """
    maxmemory, policy = eviction_settings(server)
    if policy != "noeviction" or maxmemory == 0:
        raise RuntimeError(f"OOM needs noeviction and a maxmemory, not {policy}/{maxmemory}")
    value = "f" * value_bytes
    written = 0
    while True:
        if written >= max_keys:
            raise RuntimeError(f"no OOM after {max_keys} keys of {value_bytes} bytes")
        try:
            server.command("SET", f"{FILLER_PREFIX}:{written}", value)
        except RedisReplyError as exc:
            if not str(exc).startswith("OOM"):
                raise
            break
        written += 1
    # Right at the limit, used memory jitters by a few hundred bytes (client buffers come and
    # go), so a small write could still pass now and then. Lower the limit a little below
    # what the data now uses, so every write is refused until memory is freed.
    server.command("CONFIG", "SET", "maxmemory", str(used_memory(server) - 64 * 1024))
    return written


def is_refusing_writes(server: RedisServer) -> bool:
    """True when a write of a new key is refused with -OOM (it is deleted again if not)."""
    probe = f"{FILLER_PREFIX}:probe"
    try:
        server.command("SET", probe, "p")
    except RedisReplyError as exc:
        return str(exc).startswith("OOM")
    server.command("UNLINK", probe)
    return False


@contextlib.contextmanager
def pause_writes(server: RedisServer, seconds: float = 60.0) -> Iterator[None]:
    """`CLIENT PAUSE <ms> WRITE` for the block: reads are served, writes (and scripts that
    may write) wait, and run once the block ends (`CLIENT UNPAUSE`). `seconds` bounds the
    pause should the test die inside the block."""
    server.command("CLIENT", "PAUSE", str(int(seconds * 1000)), "WRITE")
    try:
        yield
    finally:
        server.command("CLIENT", "UNPAUSE")


# -- connections ------------------------------------------------------------------------------


def client_list(server: RedisServer) -> list[dict[str, str]]:
    """CLIENT LIST as dicts (`addr`, `laddr`, `name`, `cmd`, ...), without the connection
    that asked."""
    text = str(server.command("CLIENT", "LIST"))
    clients = []
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("cmd") != "client|list":
            clients.append(fields)
    return clients


def count_connections(
    server: RedisServer, *, name: str | None = None, local_ports: Iterable[int] | None = None
) -> int:
    """Connections the server has from clients named `name`, or from the given local ports
    of 127.0.0.1 (see own_connection_ports), or all of them."""
    ports = None if local_ports is None else set(local_ports)
    count = 0
    for client in client_list(server):
        if name is not None and client.get("name") != name:
            continue
        if ports is not None and _port_of(client.get("addr", "")) not in ports:
            continue
        count += 1
    return count


def _port_of(address: str) -> int:
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else -1


_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")
_ESTABLISHED = "01"


def own_connection_ports(server: RedisServer) -> set[int]:
    """Local ports of this process's established TCP connections to `server` (Linux /proc):
    the connections a Cache in this process holds, whatever it names them."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            match = _SOCKET_LINK.fullmatch(os.readlink(f"/proc/self/fd/{fd}"))
            if match:
                inodes.add(match.group(1))
    target = (_hex_address(server.host), server.port)
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                remote_host, remote_port = remote.split(":")
                if (
                    inode in inodes
                    and state == _ESTABLISHED
                    and (remote_host, int(remote_port, 16)) == target
                ):
                    ports.add(int(local.split(":")[1], 16))
    return ports


def _hex_address(host: str) -> str:
    """127.0.0.1 as /proc/net/tcp writes it: the 4 bytes in host order, hex."""
    packed = socket.inet_aton(host)
    return (packed[::-1] if sys.byteorder == "little" else packed).hex().upper()


# -- identity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerIdentity:
    """What tells one Redis dataset history from another: a restart gives a new run_id, a
    promoted replica a new replication id."""

    run_id: str
    replication_id: str
    role: str


def server_identity(server: RedisServer) -> ServerIdentity:
    return ServerIdentity(
        run_id=server.info("server")["run_id"],
        replication_id=server.info("replication")["master_replid"],
        role=server.info("replication")["role"],
    )
