"""Tests of the test infrastructure itself: real servers, real sockets, no mocks."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster as RedisClusterClient
from redis.crc import key_slot
from redis.retry import Retry

from . import require
from .faults import (
    EVICTION_POLICIES,
    client_list,
    count_connections,
    evicted_keys,
    eviction_settings,
    fill_until_oom,
    is_refusing_writes,
    limit_memory,
    own_connection_ports,
    pause_writes,
    server_identity,
    set_eviction,
    start_evicting_redis,
    used_memory,
)
from .proxy import FaultProxy
from .replication import start_replicated_redis
from .servers import (
    PostgresServer,
    RedisReplyError,
    RedisServer,
    ServerStartError,
    find_free_port,
    redis_command,
    start_redis,
    start_redis_cluster,
    which_or_none,
)

ProxyFactory = Callable[[str, int], FaultProxy]
REPO = Path(__file__).resolve().parents[2]


def client(url: str, timeout: float = 0.3) -> redis.Redis:
    """A client that fails fast: no retries, short timeouts."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


# -- helpers ---------------------------------------------------------------------------------


def test_find_free_port_is_bindable() -> None:
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_which_or_none() -> None:
    assert which_or_none("sh") is not None
    assert which_or_none("no-such-binary-freshcache") is None


# -- private Redis ---------------------------------------------------------------------------


def test_session_redis_answers(redis_url: str, unique_namespace: str) -> None:
    r = client(redis_url)
    key = f"{unique_namespace}:hello"
    try:
        assert r.set(key, "world", ex=60)
        assert r.get(key) == b"world"
    finally:
        r.delete(key)
        r.close()


def test_private_redis_answers_and_is_gone_after_stop(private_redis: RedisServer) -> None:
    r = client(private_redis.url)
    assert r.ping()
    r.close()
    pid, data_dir = private_redis.pid, private_redis.data_dir
    assert pid is not None
    assert data_dir is not None
    assert data_dir.is_dir()
    assert private_redis.url == f"redis://127.0.0.1:{private_redis.port}/0"

    private_redis.stop()

    assert not alive(pid)
    assert refused(private_redis.port)
    assert not data_dir.exists()
    private_redis.stop()  # idempotent


def test_restart_gives_an_empty_server_on_the_same_port(private_redis: RedisServer) -> None:
    r = client(private_redis.url)
    r.set("survives?", "no")
    port, pid = private_redis.port, private_redis.pid

    private_redis.restart()

    assert private_redis.port == port
    assert private_redis.pid != pid
    r2 = client(private_redis.url)
    assert r2.dbsize() == 0
    assert r2.get("survives?") is None
    r.close()
    r2.close()


def test_kill_is_a_crash_and_start_recovers(private_redis: RedisServer) -> None:
    pid = private_redis.pid
    assert pid is not None
    private_redis.kill()
    assert not alive(pid)
    assert refused(private_redis.port)
    crashed_dir = private_redis.data_dir
    assert crashed_dir is not None
    assert crashed_dir.exists()  # a crash leaves its data behind, until the next start
    port = private_redis.port
    private_redis.start()
    assert private_redis.port == port
    assert private_redis.command("PING") == "PONG"
    assert not crashed_dir.exists()


def test_pause_hangs_and_resume_answers(private_redis: RedisServer) -> None:
    r = client(private_redis.url, timeout=0.2)
    assert r.ping()
    private_redis.pause()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        r.ping()
    assert time.monotonic() - started < 1.0
    private_redis.resume()
    r.close()
    r = client(private_redis.url)
    assert r.ping()
    r.close()


def test_stop_works_on_a_paused_server(private_redis: RedisServer) -> None:
    pid = private_redis.pid
    assert pid is not None
    private_redis.pause()
    started = time.monotonic()
    private_redis.stop()
    assert time.monotonic() - started < 3.0
    assert not alive(pid)


def test_start_redis_passes_directives() -> None:
    require("redis-server")
    with start_redis(maxmemory="10mb", maxmemory_policy="allkeys-lru") as server:
        r = client(server.url)
        assert r.config_get("maxmemory")["maxmemory"] == str(10 * 1024 * 1024)
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        r.close()


def test_a_server_that_cannot_start_says_why() -> None:
    require("redis-server")
    server = RedisServer(args={"no-such-directive": "1"})
    with pytest.raises(ServerStartError, match="exited with code") as info:
        server.start()
    assert "no-such-directive" in str(info.value)  # the log tail is in the message
    assert not server.running
    assert server.data_dir is None


def test_redis_command_speaks_resp(private_redis: RedisServer) -> None:
    assert redis_command("127.0.0.1", private_redis.port, "SET", "k", "v") == "OK"
    assert redis_command("127.0.0.1", private_redis.port, "GET", "k") == "v"
    assert redis_command("127.0.0.1", private_redis.port, "GET", "missing") is None
    assert redis_command("127.0.0.1", private_redis.port, "DBSIZE") == 1


# -- nothing is left behind --------------------------------------------------------------------

_CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from support.servers import start_redis
server = start_redis()
print(server.pid, server.data_dir, flush=True)
{ending}
"""


@pytest.mark.parametrize(
    ("ending", "why"),
    [
        ("sys.exit(0)", "atexit guard"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "parent-death signal"),
    ],
)
def test_no_server_outlives_its_test_run(ending: str, why: str) -> None:
    require("redis-server")
    code = textwrap.dedent(_CHILD).format(tests=str(REPO / "tests"), ending=ending)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    pid, data_dir = done.stdout.split()
    assert wait_gone(int(pid)), f"redis-server {pid} survived its parent ({why})"
    # A parent killed by SIGKILL cannot remove the data dir; the process is what matters.
    shutil.rmtree(data_dir, ignore_errors=True)


# -- the fault proxy -------------------------------------------------------------------------


def test_proxy_forwards_redis_traffic(
    private_redis: RedisServer, fault_proxy: ProxyFactory
) -> None:
    proxy = fault_proxy(private_redis.host, private_redis.port)
    assert proxy.mode == "pass"
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
    r = client(proxy.url)
    value = os.urandom(300_000)  # larger than one chunk, both ways
    assert r.set("big", value)
    assert r.get("big") == value
    assert proxy.connections_accepted == 1
    assert proxy.bytes_forwarded > 2 * len(value)
    r.close()


def test_proxy_refuse_fails_fast_and_resets(
    private_redis: RedisServer, fault_proxy: ProxyFactory
) -> None:
    proxy = fault_proxy(private_redis.host, private_redis.port)
    before = client(proxy.url)
    assert before.ping()

    proxy.set_mode("refuse")

    # Refused, not stalled: a stall would end in a timeout error instead (no clock is read,
    # so a busy machine cannot fail this).
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1.0)
    with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)refused"):
        client(proxy.url).ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        before.ping()  # the connection made under pass was reset

    proxy.set_mode("pass")  # the same port listens again
    after = client(proxy.url)
    assert after.ping()
    assert before.ping()  # redis-py reconnects
    before.close()
    after.close()


def test_proxy_blackhole_times_out_and_heals(
    private_redis: RedisServer, fault_proxy: ProxyFactory
) -> None:
    proxy = fault_proxy(private_redis.host, private_redis.port)
    existing = client(proxy.url, timeout=0.2)
    assert existing.ping()

    proxy.set_mode("blackhole")

    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        existing.ping()  # stalls: nothing is forwarded
    assert 0.15 < time.monotonic() - started < 1.0
    with pytest.raises(redis.exceptions.TimeoutError):
        client(proxy.url, timeout=0.2).ping()  # accepted, never answered
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.2)
    raw.sendall(b"PING\r\n")
    with pytest.raises(TimeoutError):
        raw.recv(100)

    proxy.set_mode("pass")

    # A connection that was held, not reset, delivers what it held once the partition heals.
    raw.settimeout(2.0)
    assert raw.recv(100) == b"+PONG\r\n"
    raw.close()
    fresh = client(proxy.url)
    assert fresh.ping()
    fresh.close()
    existing.close()


def test_proxy_delay_adds_latency_both_ways(
    private_redis: RedisServer, fault_proxy: ProxyFactory
) -> None:
    proxy = fault_proxy(private_redis.host, private_redis.port)
    r = client(proxy.url, timeout=2.0)
    assert r.ping()
    proxy.set_mode("delay", delay=0.1)
    started = time.monotonic()
    assert r.ping()
    assert 0.2 <= time.monotonic() - started < 1.0  # 0.1 s each way
    proxy.set_mode("pass")
    started = time.monotonic()
    assert r.ping()
    assert time.monotonic() - started < 0.1
    r.close()


def test_proxy_reset_connections(private_redis: RedisServer, fault_proxy: ProxyFactory) -> None:
    proxy = fault_proxy(private_redis.host, private_redis.port)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=1.0)
    raw.sendall(b"PING\r\n")
    assert raw.recv(100) == b"+PONG\r\n"
    proxy.reset_connections()
    with pytest.raises(ConnectionResetError):
        raw.recv(100)
    raw.close()
    assert client(proxy.url).ping()  # the listener was untouched


def test_proxy_to_a_dead_target_resets_clients(fault_proxy: ProxyFactory) -> None:
    proxy = fault_proxy("127.0.0.1", find_free_port())
    with pytest.raises(redis.exceptions.ConnectionError):
        client(proxy.url).ping()


def test_proxy_close_never_hangs(private_redis: RedisServer) -> None:
    proxy = FaultProxy(private_redis.host, private_redis.port).start()
    stalled = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(5)]
    proxy.set_mode("blackhole")
    for sock in stalled:
        sock.sendall(b"PING\r\n")
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 2.0  # bounded by design; a loaded machine is slow
    assert refused(proxy.port)
    proxy.close()  # idempotent
    for sock in stalled:
        sock.close()


def test_proxy_rejects_unknown_modes(private_redis: RedisServer) -> None:
    with FaultProxy(private_redis.host, private_redis.port) as proxy, pytest.raises(ValueError):
        proxy.set_mode("drop")


async def test_proxy_from_async_code(private_redis: RedisServer, fault_proxy: ProxyFactory) -> None:
    proxy = fault_proxy(private_redis.host, private_redis.port)
    r = redis.asyncio.Redis.from_url(
        proxy.url, socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    try:
        assert await r.ping()
        proxy.set_mode("blackhole")
        with pytest.raises(redis.exceptions.TimeoutError):
            await r.ping()
        proxy.set_mode("pass")
        assert await r.ping()
        proxy.set_mode("refuse")
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(r.ping(), 1.0)
    finally:
        await r.aclose()


# -- PostgreSQL -------------------------------------------------------------------------------


async def test_postgres_accepts_a_query(postgres_dsn: str, postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT 40 + 2") == 42
    finally:
        await conn.close()


async def test_postgres_create_database(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("support_test_db")
    assert url == postgres_server.url("support_test_db")
    conn = await asyncpg.connect(postgres_server.url("support_test_db", driver=""))
    try:
        assert await conn.fetchval("SELECT current_database()") == "support_test_db"
    finally:
        await conn.close()
        postgres_server.execute('DROP DATABASE "support_test_db"')
    with pytest.raises(ValueError):
        postgres_server.create_database("bad; name")


# -- the CI rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("true", "1 error")])
def test_missing_redis_skips_locally_and_fails_in_ci(ci: str, outcome: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CI", "PYTEST_ADDOPTS"}}
    env["PATH"] = "/nonexistent"  # no redis-server (which_or_none does not look in /usr/bin)
    if ci:
        env["CI"] = ci
    node = "tests/support/test_support.py::test_session_redis_answers"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert outcome in done.stdout, done.stdout + done.stderr
    if ci:
        assert "CI=true requires every service" in done.stdout


# -- Redis Cluster ------------------------------------------------------------------------------


@pytest.mark.slow
def test_session_cluster_url(redis_cluster_url: str, unique_namespace: str) -> None:
    scheme, _, hosts = redis_cluster_url.partition("://")
    assert scheme == "redis+cluster"
    seeds = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in hosts.split(","))]
    assert len(seeds) == 3
    rc = RedisClusterClient(host=seeds[0][0], port=seeds[0][1], socket_timeout=2.0)
    keys = [f"{unique_namespace}:{i}" for i in range(20)]
    try:
        assert len({key_slot(k.encode()) for k in keys}) > 1
        for key in keys:
            assert rc.set(key, key, ex=60)
        assert [rc.get(k) for k in keys] == [k.encode() for k in keys]
    finally:
        rc.delete(*keys)
        rc.close()


@pytest.mark.slow
def test_cluster_serves_every_slot_and_fails_over() -> None:
    require("redis-server", "redis-cli")
    with start_redis_cluster() as cluster:
        assert len(cluster.nodes) == 6
        assert len(cluster.primaries()) == 3
        assert cluster.url.startswith("redis+cluster://127.0.0.1:")
        host, port = cluster.primaries()[0]
        rc = RedisClusterClient(host=host, port=port, socket_timeout=2.0)
        try:
            keys = [f"support:{i}" for i in range(30)]
            owners = {cluster.node_for_slot(key_slot(k.encode())).port for k in keys}
            assert len(owners) == 3  # the keys span every primary
            for key in keys:
                assert rc.set(key, key.upper())
            cluster.wait_for_replication()

            slot = key_slot(keys[0].encode())
            killed = cluster.kill_primary_for_slot(slot)
            cluster.wait_for_failover(timeout=30.0)

            assert cluster.node_for_slot(slot).address != killed
            assert killed not in cluster.primaries()
            assert len(cluster.primaries()) == 3
            for key in keys:  # nothing acknowledged by a replica was lost
                assert rc.get(key) == key.upper().encode()
            assert rc.set(keys[0], "after failover")
            assert rc.get(keys[0]) == b"after failover"
        finally:
            rc.close()
    assert not cluster.running


# -- fault injection on a real redis-server (tests/support/faults.py, replication.py) ----------


@pytest.mark.parametrize("policy", EVICTION_POLICIES)
def test_maxmemory_policy_at_start_and_at_run_time_evicts_or_refuses(policy: str) -> None:
    require("redis-server")
    with start_evicting_redis(maxmemory="64mb", policy="allkeys-lru") as server:
        assert eviction_settings(server) == (64 * 1024 * 1024, "allkeys-lru")
        limit = limit_memory(server, 512 * 1024, policy)  # at run time
        assert eviction_settings(server) == (limit, policy)
        r = client(server.url, timeout=2.0)
        try:
            refused = 0
            value = b"v" * 8192
            for i in range(400):  # ~3 MB: six times the headroom
                try:
                    # volatile-lru evicts only keys with a TTL: give every key one.
                    r.set(f"k:{i}", value, ex=3600)
                except redis.exceptions.OutOfMemoryError:
                    refused += 1
            if policy == "noeviction":
                assert refused > 0
                assert evicted_keys(server) == 0
                assert r.get("k:0") == value  # reads still work
            else:
                assert refused == 0
                assert evicted_keys(server) > 0
                assert r.dbsize() < 400
            assert used_memory(server) <= limit + 256 * 1024
        finally:
            r.close()


def test_oom_under_noeviction_refuses_writes_but_serves_reads_and_unlink(
    private_redis: RedisServer,
) -> None:
    private_redis.command("SET", "kept", "old")
    limit_memory(private_redis, 256 * 1024, "noeviction")
    written = fill_until_oom(private_redis)
    assert written > 0
    assert is_refusing_writes(private_redis)
    with pytest.raises(RedisReplyError, match=r"^OOM"):
        private_redis.command("SET", "kept", "new")
    assert private_redis.command("GET", "kept") == "old"  # reads are served
    assert private_redis.command("UNLINK", "kept") == 1  # deleting is allowed under OOM
    assert private_redis.command("GET", "kept") is None
    set_eviction(private_redis, 0, "allkeys-lru")
    with pytest.raises(RuntimeError, match="noeviction"):
        fill_until_oom(private_redis)


def test_bgsave_then_restart_from_the_older_snapshot_on_the_same_port(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    private_redis.command("SET", "token", "v1")
    private_redis.command("SET", "entry", "under-v1")
    before = server_identity(private_redis)
    snapshot = private_redis.save_snapshot(tmp_path / "older.rdb")
    assert snapshot.stat().st_size > 0
    private_redis.command("SET", "token", "v2")  # a bump after the snapshot
    private_redis.command("SET", "later", "x")
    port, pid = private_redis.port, private_redis.pid

    private_redis.restart_from_snapshot(snapshot)

    assert private_redis.port == port
    assert private_redis.pid != pid
    assert private_redis.command("GET", "token") == "v1"  # the bump is gone
    assert private_redis.command("GET", "entry") == "under-v1"
    assert private_redis.command("GET", "later") is None
    assert server_identity(private_redis).run_id != before.run_id
    private_redis.restart()  # an ordinary restart is empty again
    assert private_redis.command("DBSIZE") == 0


def test_a_replica_that_missed_a_write_takes_over_the_same_address() -> None:
    require("redis-server")
    with start_replicated_redis() as pair:
        r = client(pair.url, timeout=2.0)
        try:
            r.set("token", "v1")
            pair.wait_for_sync()
            assert pair.replica.command("GET", "token") == "v1"
            before = server_identity(pair.primary)

            pair.partition()
            r.set("token", "v2")  # acknowledged by the primary only
            assert pair.primary.command("GET", "token") == "v2"
            assert pair.replica.command("GET", "token") == "v1"

            pair.failover()
            assert not pair.primary.running
            # The same address now answers from the promoted replica, without the write.
            assert r.get("token") == b"v1"
            after = server_identity(pair.replica)
            assert after.role == "master"
            assert after.replication_id != before.replication_id
            assert after.run_id != before.run_id
            r.set("token", "v3")  # it takes writes
            assert pair.replica.command("GET", "token") == "v3"
        finally:
            r.close()
    assert not pair.replica.running


def test_pause_writes_holds_writes_and_serves_reads(private_redis: RedisServer) -> None:
    private_redis.command("SET", "k", "before")
    with pause_writes(private_redis):
        assert private_redis.command("GET", "k") == "before"  # reads answer
        sock = socket.create_connection(private_redis.address, timeout=5.0)
        try:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\nduring\r\n")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(64)  # held: no reply while paused
            assert private_redis.command("GET", "k") == "before"
        except BaseException:
            sock.close()
            raise
    sock.settimeout(5.0)
    with sock:
        assert sock.recv(64) == b"+OK\r\n"  # released, not dropped, once unpaused
    assert private_redis.command("GET", "k") == "during"


def test_connections_counted_by_client_name_and_by_local_port(
    private_redis: RedisServer,
) -> None:
    assert own_connection_ports(private_redis) == set()
    named = [redis.Redis.from_url(private_redis.url, client_name="probe") for _ in range(3)]
    anonymous = [redis.Redis.from_url(private_redis.url) for _ in range(2)]
    try:
        for r in [*named, *anonymous]:
            r.ping()  # connect
        assert count_connections(private_redis, name="probe") == 3
        ports = own_connection_ports(private_redis)
        assert len(ports) == 5
        assert count_connections(private_redis, local_ports=ports) == 5
        assert count_connections(private_redis) == 5  # the asking connection is left out
        assert {c["name"] for c in client_list(private_redis)} == {"probe", ""}
    finally:
        for r in [*named, *anonymous]:
            r.close()
    assert own_connection_ports(private_redis) == set()
    assert count_connections(private_redis) == 0


def test_proxy_retarget_moves_new_and_reset_connections(
    private_redis: RedisServer, fault_proxy: ProxyFactory
) -> None:
    with RedisServer() as other:
        private_redis.command("SET", "where", "first")
        other.command("SET", "where", "second")
        proxy = fault_proxy(private_redis.host, private_redis.port)
        r = client(proxy.url, timeout=2.0)
        try:
            assert r.get("where") == b"first"
            proxy.retarget(other.host, other.port)
            assert r.get("where") == b"second"  # redis-py reconnects after the reset
        finally:
            r.close()
