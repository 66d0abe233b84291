"""Redis specifics (one round trip per hit, a pool that waits): round trips counted on the
wire, the commands used on the request path, and 1,000 concurrent callers through the default pool.

Round trips are counted client-side: every ``send_packed_command`` of redis-py's asyncio
connections is one write to the socket (a pipeline is one), and its RESP payload names the
commands. The commands the server ran (including those inside Lua scripts) come from
``INFO commandstats`` on a private server, which nothing else talks to.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio.connection
from fc_helpers import Calls

from freshcache import Cache
from support.servers import RedisServer

# What a managed Redis allows and freshcache may use on the request path (no KEYS, CONFIG,
# DEBUG or CLIENT SETNAME requirements), including what its scripts call.
ALLOWED = {"mget", "set", "get", "evalsha", "script|load", "scan", "unlink", "pttl", "pexpire"}
CONNECTION_SETUP = {"CLIENT", "HELLO", "SELECT", "AUTH", "PING"}
# Connection set-up as the server counts it, and the test's own INFO.
SERVER_SETUP = {"client|setinfo", "hello", "select", "auth", "ping", "info"}


def parse_commands(payload: bytes) -> list[str]:
    """Command names in a RESP payload of one or more arrays of bulk strings."""
    names, i = [], 0
    while i < len(payload):
        assert payload[i : i + 1] == b"*", payload[i : i + 20]
        end = payload.index(b"\r\n", i)
        count, i = int(payload[i + 1 : end]), end + 2
        for n in range(count):
            end = payload.index(b"\r\n", i)
            length, i = int(payload[i + 1 : end]), end + 2
            if n == 0:
                names.append(payload[i : i + length].decode().upper())
            i += length + 2
    return names


class Wire:
    """Every write redis-py's asyncio connections make: one list of command names per trip."""

    def __init__(self) -> None:
        self.trips: list[list[str]] = []

    def record(self, command: Any) -> None:
        if isinstance(command, str):
            command = command.encode()
        chunks = [command] if isinstance(command, bytes | memoryview) else list(command)
        names = parse_commands(b"".join(bytes(c) for c in chunks))
        if not set(names) <= CONNECTION_SETUP:
            self.trips.append(names)

    def take(self) -> list[list[str]]:
        trips, self.trips = self.trips, []
        return trips


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    recorder = Wire()
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        recorder.record(command)
        await original(self, command, check_health)

    monkeypatch.setattr(
        redis.asyncio.connection.AbstractConnection, "send_packed_command", send_packed_command
    )
    return recorder


def commandstats(server: RedisServer) -> Counter[str]:
    text = server.command("INFO", "commandstats")
    assert isinstance(text, str)
    return Counter(
        {name: int(calls) for name, calls in re.findall(r"cmdstat_(\S+?):calls=(\d+)", text)}
    )


@pytest.fixture
async def private_cache(private_redis: RedisServer) -> AsyncIterator[Cache]:
    cache = Cache.from_url(private_redis.url, namespace="rt", timeout=2.0)
    yield cache
    await cache.aclose()


async def test_a_hit_is_exactly_one_mget(
    private_cache: Cache, private_redis: RedisServer, wire: Wire
) -> None:
    calls = Calls()

    @private_cache.cached(ttl=60, key_prefix="booking:availability:{day}")
    async def slots(day: str) -> list[int]:
        calls(day)
        return [1, 2]

    await slots("sat")  # a miss: tokens, script, entry
    wire.take()
    before = commandstats(private_redis)
    for _ in range(25):
        assert await slots("sat") == [1, 2]
    assert await asyncio.gather(*(slots("sat") for _ in range(25))) == [[1, 2]] * 25
    # One round trip per sequential hit, nothing else; the 25 concurrent hits of one key cost
    # two: the first caller's, and the next one, shared by the 24 that arrived meanwhile.
    assert wire.take() == [["MGET"]] * 27
    executed = commandstats(private_redis) - before
    assert executed["mget"] == 27
    assert set(executed) - SERVER_SETUP == {"mget"}
    assert calls.count == 1
    assert private_cache.stats()["booking:availability:{day}"].hits == 50


async def test_a_miss_is_one_mget_and_one_evalsha(private_cache: Cache, wire: Wire) -> None:
    @private_cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(n: int) -> int:
        return n

    @private_cache.cached(ttl=60, key_prefix="booking:availability:{day}")
    async def slots(day: str) -> str:
        return day

    await stats(0)  # warms the script cache of the server (EVALSHA, NOSCRIPT, SCRIPT LOAD)
    wire.take()

    await stats(1)  # a new entry: its own token is created before the body runs
    assert wire.take() == [["MGET"], ["SET"], ["EVALSHA"]]

    await stats.invalidate(1)
    wire.take()
    await stats(1)  # every token exists: the tokens read are the ones stored with the value
    assert wire.take() == [["MGET"], ["EVALSHA"]]

    await slots("sat")  # booking:availability, :sat, :sat:<function> and the entry's token
    assert wire.take() == [["MGET"], ["SET", "SET", "SET", "SET"], ["EVALSHA"]]  # a pipeline

    await slots("sun")  # only :sun, :sun:<function> and the entry's token are new
    assert wire.take() == [["MGET"], ["SET", "SET", "SET"], ["EVALSHA"]]

    await slots("sun")
    assert wire.take() == [["MGET"]]


async def test_invalidations_are_one_write_each_and_only_managed_safe_commands_are_used(
    private_cache: Cache, private_redis: RedisServer, wire: Wire
) -> None:
    @private_cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats(n: int) -> int:
        return n

    for n in range(20):
        await stats(n)
    await stats(1)
    wire.take()
    await private_cache.invalidate("booking:*")
    assert wire.take() == [["SET"]]  # O(1): one token replaced, whatever the keyspace

    await stats.invalidate(3)
    assert wire.take() == [["SET"]]  # one tombstone

    await private_cache.invalidate("*:stats:*")  # not aligned: SCAN + UNLINK, counted
    trips = wire.take()
    assert {name for trip in trips for name in trip} == {"SCAN", "UNLINK"}
    assert private_cache.stats()["*:stats"].invalidations == {"scan": 1}

    used = set(commandstats(private_redis)) - SERVER_SETUP
    assert used <= ALLOWED, used - ALLOWED


async def _thousand_callers(
    redis_url: str, namespace: str, distinct: bool, **options: Any
) -> tuple[Any, int]:
    """Two rounds of 1,000 concurrent calls (cold, then warm); returns the prefix's stats and
    how many times the body ran."""
    cache = Cache.from_url(redis_url, namespace=namespace, **options)
    calls = Calls()

    @cache.cached(ttl=60, key_prefix="load")
    async def value(n: int) -> int:
        calls(n)
        return n * 2

    try:
        for _round in range(2):
            ns = [i if distinct else 7 for i in range(1000)]
            results = await asyncio.gather(*(value(n) for n in ns))  # no exception escapes
            assert results == [n * 2 for n in ns]  # every call answered, correctly
        return cache.stats()["load"], calls.count
    finally:
        # The clean-up has its own client with redis-py's default timeouts: the cache's are
        # 50 ms, which a loaded machine exceeds, and a failed clean-up is not the verdict.
        await cache.aclose()
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                await client.unlink(key)
        finally:
            await client.aclose()


@pytest.mark.parametrize("distinct", [True, False], ids=["distinct keys", "one key"])
async def test_1000_concurrent_callers_all_get_answers(
    redis_url: str, unique_namespace: str, distinct: bool
) -> None:
    """Every option at its default (max_connections=50, timeout=0.05): every caller gets the
    right answer. On a busy machine some calls may time out and run uncached: that is the
    failure behaviour working, so this test asserts the answers, not a count of errors (how
    often the defaults hold on an idle machine is a benchmark row: "1,000 concurrent callers")."""
    await _thousand_callers(redis_url, unique_namespace, distinct)


@pytest.mark.parametrize("distinct", [True, False], ids=["distinct keys", "one key"])
async def test_1000_concurrent_callers_wait_for_the_pool_and_count_no_errors(
    redis_url: str, unique_namespace: str, distinct: bool
) -> None:
    """The default pool of 50 connections, and waits bounded generously (a slow machine must
    not decide the verdict): the callers beyond the pool wait instead of failing, so there are
    no errors, the cold round computes each key once and the warm round is all hits."""
    counters, bodies = await _thousand_callers(
        redis_url, unique_namespace, distinct, timeout=10.0, pool_timeout=60.0
    )
    assert counters.errors == 0, dict(counters.errors_by_kind)
    assert counters.bypasses == 0, dict(counters.bypasses_by_reason)
    assert counters.hits == 1000
    assert counters.lookups == 2000
    assert bodies == (1000 if distinct else 1)


def test_the_lane_packs_mget_exactly_as_redis_py_does() -> None:
    """The hit path's own RESP packing, byte for byte against redis-py's, for plain keys,
    non-ASCII keys, percent-encoded surrogates and a batch of 320 keys."""
    from redis.connection import Connection

    from freshcache.backends.redis.lane import pack_mget

    packer = Connection()
    for keys in (
        ["ns:a:b"],
        ["ns:réservation:日本:1", "ns:__gen__:x"],
        ["ns:%ED%A0%80:k", ""],
        [f"bench:rows:get:{n}:__key__:abc" for n in range(320)],
    ):
        assert b"".join(pack_mget(keys)) == b"".join(packer.pack_command("MGET", *keys))
