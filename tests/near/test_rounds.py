"""Concurrent reads share the *next* round trip, never one already in flight: one key's callers
share one read, many keys' callers one batch."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from freshcache import Cache
from freshcache._engine.rounds import BATCH_ENTRIES, AsyncRounds, SyncRounds
from freshcache.backends.base import EntryKeys

Values = list[bytes | None]


def keys_of(name: str) -> EntryKeys:
    return EntryKeys.of(name, [f"{name}:token"])


class Wire:
    """Round trips the test answers by hand: each is a future, with the keys it carried."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], asyncio.Future[list[Values]]]] = []

    async def one(self, keys: EntryKeys) -> Values:
        (answer,) = await self._send([keys])
        return answer

    async def many(self, batch: Sequence[EntryKeys]) -> list[Values]:
        return await self._send(list(batch))

    async def _send(self, batch: list[EntryKeys]) -> list[Values]:
        answer: asyncio.Future[list[Values]] = asyncio.get_running_loop().create_future()
        self.sent.append(([k.entry for k in batch], answer))
        return await answer

    def answer(self, index: int, label: bytes) -> None:
        entries, future = self.sent[index]
        future.set_result([[label + b":" + e.encode()] for e in entries])


async def test_callers_that_arrive_during_a_read_wait_for_the_next_one() -> None:
    wire = Wire()
    rounds = AsyncRounds(wire.one, wire.many, parallel=4)
    first = asyncio.ensure_future(rounds.fetch(keys_of("k")))
    await asyncio.sleep(0)
    assert len(wire.sent) == 1  # the first caller's read is in flight
    later = [asyncio.ensure_future(rounds.fetch(keys_of("k"))) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(wire.sent) == 1  # they did not send their own, nor join the one in flight
    wire.answer(0, b"old")
    assert await first == [b"old:k"]
    await asyncio.sleep(0)
    assert len(wire.sent) == 2  # one read for all fifty, sent after every one of them arrived
    assert wire.sent[1][0] == ["k"]
    wire.answer(1, b"new")
    assert await asyncio.gather(*later) == [[b"new:k"]] * 50
    # Nobody waiting: the next caller sends at once.
    third = asyncio.ensure_future(rounds.fetch(keys_of("k")))
    await asyncio.sleep(0)
    assert len(wire.sent) == 3
    wire.answer(2, b"x")
    assert await third == [b"x:k"]


async def test_callers_of_many_keys_beyond_the_parallel_rounds_share_one_batch() -> None:
    wire = Wire()
    rounds = AsyncRounds(wire.one, wire.many, parallel=2)
    callers = [asyncio.ensure_future(rounds.fetch(keys_of(f"k{n}"))) for n in range(100)]
    await asyncio.sleep(0)
    assert [entries for entries, _ in wire.sent] == [["k0"], ["k1"]]  # two rounds in flight
    wire.answer(1, b"a")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # The other 98 callers, each key once, in one batch sent after all of them arrived.
    assert len(wire.sent) == 3
    assert wire.sent[2][0] == [f"k{n}" for n in range(2, 100)]
    wire.answer(0, b"a")
    wire.answer(2, b"b")
    answers = await asyncio.gather(*callers)
    assert answers[:2] == [[b"a:k0"], [b"a:k1"]]
    assert answers[2:] == [[f"b:k{n}".encode()] for n in range(2, 100)]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_ones_go_on() -> None:
    wire = Wire()
    rounds = AsyncRounds(wire.one, wire.many, parallel=1)
    first = asyncio.ensure_future(rounds.fetch(keys_of("a")))
    await asyncio.sleep(0)
    batch = [asyncio.ensure_future(rounds.fetch(keys_of(k))) for k in "bc"]
    await asyncio.sleep(0)
    wire.answer(0, b"x")
    for _ in range(3):  # the answer is read, the pending batch is sent
        await asyncio.sleep(0)
    wire.sent[1][1].set_exception(ConnectionError("gone"))
    for caller in batch:
        try:
            await caller
        except ConnectionError:
            pass
        else:
            raise AssertionError("a caller of the failed batch got an answer")
    assert await first == [b"x:a"]
    again = asyncio.ensure_future(rounds.fetch(keys_of("b")))
    for _ in range(3):
        await asyncio.sleep(0)
    wire.answer(2, b"y")
    assert await again == [b"y:b"]


async def test_a_cancelled_waiter_does_not_cancel_the_read_of_the_others() -> None:
    wire = Wire()
    rounds = AsyncRounds(wire.one, wire.many, parallel=4)
    first = asyncio.ensure_future(rounds.fetch(keys_of("k")))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(rounds.fetch(keys_of("k")))
    stayer = asyncio.ensure_future(rounds.fetch(keys_of("k")))
    await asyncio.sleep(0)
    quitter.cancel()
    wire.answer(0, b"1")
    await first
    await asyncio.sleep(0)
    wire.answer(1, b"2")
    assert await stayer == [b"2:k"]
    assert quitter.cancelled()


def test_threads_that_arrive_during_a_read_share_the_next_one() -> None:
    """Threads: the first read is held on the wire until the others have joined the pending
    round; they are answered by one batch sent after the held read returned."""
    release = threading.Event()
    sent: list[list[str]] = []

    def one(keys: EntryKeys) -> Values:
        sent.append([keys.entry])
        if len(sent) == 1:
            assert release.wait(30)
        return [b"one:" + keys.entry.encode()]

    def many(batch: Sequence[EntryKeys]) -> list[Values]:
        sent.append([k.entry for k in batch])
        return [[b"many:" + k.entry.encode()] for k in batch]

    rounds = SyncRounds(one, many, parallel=1)
    answers: dict[str, Values] = {}

    def call(name: str) -> None:
        answers[name] = rounds.fetch(keys_of(name))

    first = threading.Thread(target=call, args=("k0",))
    first.start()
    while not sent:
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=(f"k{n}",)) for n in range(1, 20)]
    for thread in others:
        thread.start()
    # Every other thread has joined the pending round (it cannot be sent before the held read
    # returns): wait until the state says so, not for a time.
    deadline = time.monotonic() + 60
    while rounds.pending_size < 19 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join(60)
    assert sent[0] == ["k0"]
    assert sorted(sent[1]) == sorted(f"k{n}" for n in range(1, 20))
    assert len(sent) == 2
    assert answers["k0"] == [b"one:k0"]
    assert all(answers[f"k{n}"] == [f"many:k{n}".encode()] for n in range(1, 20))


async def test_200_callers_of_an_expired_hot_key_cost_two_reads(
    private_redis: Any, unique_namespace: str
) -> None:
    cache = Cache.from_url(
        private_redis.url, namespace=unique_namespace, timeout=5.0, near_lease=60
    )

    @cache.cached(ttl=60, key_prefix="hot")
    async def hot() -> int:
        return 7

    assert await hot() == 7  # computed and stored
    cache.engine.near.clear()  # type: ignore[union-attr]
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_resetstat()
    # Every caller starts before any answer is read (one event loop tick): the first sends its
    # MGET, the other 199 share the next one.
    assert await asyncio.gather(*(hot() for _ in range(200))) == [7] * 200
    stats = admin.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 2
    admin.close()
    await cache.aclose()


async def test_200_callers_of_200_keys_cost_a_few_reads(
    private_redis: Any, unique_namespace: str
) -> None:
    """Without the near cache too: 200 callers of 200 warm keys, all started in one tick. The
    first few go out at once (the parallel rounds), the rest share one batch (a few MGETs)."""
    cache = Cache.from_url(private_redis.url, namespace=unique_namespace, timeout=30.0)

    @cache.cached(ttl=60, key_prefix="rows")
    async def row(n: int) -> int:
        return n * 10

    for n in range(200):
        assert await row(n) == n * 10  # computed and stored
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_resetstat()
    assert await asyncio.gather(*(row(n) for n in range(200))) == [n * 10 for n in range(200)]
    mgets = admin.info("commandstats")["cmdstat_mget"]["calls"]
    parallel = cache.engine.shared.parallel  # type: ignore[union-attr]
    # The shared batch goes out as MGETs of at most BATCH_ENTRIES entries each.
    assert mgets <= parallel + -(-(200 - parallel) // BATCH_ENTRIES)
    assert cache.stats()["rows"].hits == 200
    admin.close()
    await cache.aclose()


def test_threads_reading_many_keys_get_their_own_values(
    private_redis: Any, unique_namespace: str
) -> None:
    """64 threads, 64 keys, three rounds: whatever rounds they share, each gets its key's
    value, and the warm rounds are hits."""
    cache = Cache.from_url(private_redis.url, namespace=unique_namespace, timeout=30.0)

    @cache.cached(ttl=60, key_prefix="rows")
    def row(n: int) -> int:
        return n * 10

    answers: list[list[int]] = []
    for _round in range(3):
        start = threading.Barrier(64)
        got = [0] * 64

        def call(n: int) -> None:
            start.wait()  # noqa: B023
            got[n] = row(n)  # noqa: B023

        threads = [threading.Thread(target=call, args=(n,)) for n in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        answers.append(got)
    assert answers == [[n * 10 for n in range(64)]] * 3
    assert cache.stats()["rows"].hits == 128
    cache.close()
