"""Extended leases (``near_max_age``, standalone Redis): an entry kept past its own lease while
this process's heartbeats come back through Redis after every invalidation published before
them, and the writers' part of it (publish after the write, wait a lease after the publish was
answered, or ``near_max_age`` when it was not).

No verdict depends on speed: where an extension must have happened the test waits for it (a
busy machine only makes it wait longer), and the stale-read checks compare values, not times.
The one duration asserted is a lower bound on a writer's own sleep, which never ends early."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from freshcache import Cache
from freshcache._engine.near_push import Push

LEASE = 0.2
MAX_AGE = 30.0


def _caches(url: str, namespace: str, count: int, **options: Any) -> list[Cache]:
    options = {"near_lease": LEASE, "near_max_age": MAX_AGE, "timeout": 5.0, **options}
    return [Cache.from_url(url, namespace=namespace, **options) for _ in range(count)]


def _row_of(cache: Cache, db: dict[int, int]):  # type: ignore[no-untyped-def]
    @cache.cached(ttl=300, key_prefix="rows")
    def row(row_id: int) -> int:
        return db[row_id]

    return row


def _wait_for_an_extended_hit(cache: Cache, read: Any, expected: int) -> None:
    """Read until one read more than a lease after the entry was validated is a near hit (the
    entry's own lease had run out: only an extension can serve it). On a machine so busy that
    no heartbeat comes back within a lease, reads revalidate instead; the test waits."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no extended near hit in 60 s"
        assert read(1) == expected  # validates the entry (or serves it)
        before = cache.stats()["rows"].near_hits
        time.sleep(LEASE * 2.5)  # past the entry's own lease
        assert read(1) == expected
        if cache.stats()["rows"].near_hits > before:
            return


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_entry_is_served_past_its_lease_while_heartbeats_come_back(
    redis_url: str, unique_namespace: str
) -> None:
    (cache,) = _caches(redis_url, unique_namespace, 1)
    row = _row_of(cache, {1: 10})
    try:
        _wait_for_an_extended_hit(cache, row, 10)
        near = cache.engine.near
        assert near is not None
        assert near.max_age == MAX_AGE
    finally:
        cache.close()


def test_readers_never_see_stale_values_after_a_write_returned(
    redis_url: str, unique_namespace: str
) -> None:
    """Writer A and reader B (separate caches sharing nothing but Redis, as two processes
    would); B's entry is kept on extensions. After each of A's invalidations returned, B's next
    read is the new value."""
    writer, reader = _caches(redis_url, unique_namespace, 2)
    db = {1: 0}
    write_row, read_row = _row_of(writer, db), _row_of(reader, db)
    try:
        _wait_for_an_extended_hit(reader, read_row, 0)
        for version in range(1, 31):
            assert read_row(1) == version - 1  # a near hit, most of the time an extended one
            db[1] = version
            if version % 2:
                writer.invalidate_sync("rows:*")
            else:
                write_row.invalidate(1)
            assert read_row(1) == version
    finally:
        writer.close()
        reader.close()


def test_a_write_whose_publish_is_lost_waits_max_age_and_serves_nothing_stale(
    redis_url: str, unique_namespace: str
) -> None:
    """The writer's publish cannot reach Redis (its push client points at a closed port): the
    reader never hears of the write and keeps extending its entry, so the writer waits
    ``near_max_age`` from the acknowledgement, past which no entry validated before the write
    is served anywhere."""
    max_age = 2.0
    writer, reader = _caches(redis_url, unique_namespace, 2, near_max_age=max_age)
    writer_io = writer.engine.near_io
    assert writer_io is not None
    writer_io.push.url = f"redis://127.0.0.1:{_closed_port()}/0"
    db = {1: 1}
    read_row = _row_of(reader, db)
    try:
        _wait_for_an_extended_hit(reader, read_row, 1)
        db[1] = 2
        began = time.monotonic()
        writer.invalidate_sync("rows:*")
        waited = time.monotonic() - began
        assert read_row(1) == 2
        assert waited >= max_age  # a sleep on its own clock: never shorter
    finally:
        writer.close()
        reader.close()


def test_losing_the_subscription_ends_every_extension(
    private_redis: Any, unique_namespace: str
) -> None:
    (cache,) = _caches(private_redis.url, unique_namespace, 1)
    row = _row_of(cache, {1: 5})
    near = cache.engine.near
    assert near is not None
    try:
        _wait_for_an_extended_hit(cache, row, 5)
        subscription = near.push_epoch
        near_hits = cache.stats()["rows"].near_hits
        private_redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        deadline = time.monotonic() + 30
        # The subscriber noticed, subscribed again, and its heartbeats extend again.
        while near.push_epoch < subscription + 2 or near.extended_until <= near.clock():
            assert time.monotonic() < deadline, "the subscriber did not come back"
            time.sleep(0.01)
        # The entry's own lease ran out long ago; the subscription that tracked it is gone,
        # and messages may have been missed in between: not served.
        assert row(1) == 5
        assert cache.stats()["rows"].near_hits == near_hits
    finally:
        cache.close()


def test_heartbeats_go_out_only_while_wanted_and_follow_earlier_messages(redis_url: str) -> None:
    """A subscriber sends heartbeats (PINGs on its own connection) only while its table could
    use them, and each answer comes after every message published before it."""
    events: list[str] = []
    wanted = threading.Event()
    push = Push(
        redis_url,
        f"t-beat-{time.monotonic_ns()}:__near__",
        lambda patterns: events.append("message"),
        timeout=2.0,
        on_heartbeat=lambda sent_at, subscription: events.append("beat"),
        heartbeat=0.02,
        wanted=wanted.is_set,
    )
    other = Push(redis_url, push.channel, lambda patterns: None, timeout=2.0)
    try:
        push.subscribe()
        assert push.subscribed.wait(30)
        assert other.publish([("ns:rows:*", ["rows"])]) is not None
        deadline = time.monotonic() + 30
        while "message" not in events:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)  # five heartbeat periods, none wanted
        assert events == ["message"]
        wanted.set()
        while "beat" not in events:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert events[0] == "message"
    finally:
        push.close()
        other.close()


def test_options_and_where_extension_applies(redis_cluster_url: str) -> None:
    assert Cache.from_url("redis://127.0.0.1:1/0", near_lease=0.05).engine.near.max_age == 1.0  # type: ignore[union-attr]
    url = "redis://127.0.0.1:1/0?near_lease=0.05&near_max_age=3"
    assert Cache.from_url(url).engine.near.max_age == 3.0  # type: ignore[union-attr]
    plain = Cache.from_url("redis://127.0.0.1:1/0", near_lease=0.05, near_max_age=0)
    assert plain.engine.near.max_age == 0.0  # type: ignore[union-attr]
    # Not longer than the lease: nothing to extend.
    short = Cache.from_url("redis://127.0.0.1:1/0", near_lease=0.5, near_max_age=0.2)
    assert short.engine.near.max_age == 0.0  # type: ignore[union-attr]
    cluster = Cache.from_url(redis_cluster_url, near_lease=0.05)
    assert cluster.engine.near.max_age == 0.0  # type: ignore[union-attr]
    cluster.close()
    with pytest.raises(ValueError, match="near_max_age needs standalone Redis"):
        Cache.from_url(redis_cluster_url, near_lease=0.05, near_max_age=1.0)
    with pytest.raises(ValueError, match="near_max_age='later' is not a number of seconds"):
        Cache.from_url("redis://127.0.0.1:1/0?near_lease=0.05&near_max_age=later")
    with pytest.raises(ValueError, match="near_max_age must be"):
        Cache.from_url("redis://127.0.0.1:1/0", near_lease=0.05, near_max_age=-1)


def test_a_background_replay_is_announced_to_other_near_caches(
    private_redis: Any, fault_proxy: Any, unique_namespace: str
) -> None:
    """Writer A cannot reach Redis when it invalidates (the invalidation is kept); once Redis
    answers again, A's background replayer applies it and announces it, and reader B drops the
    entry it kept extending meanwhile. Without the announcement B would serve it until its
    ``near_max_age`` (30 s here); the test would wait in vain for the drop."""
    proxy = fault_proxy(*private_redis.address)
    (writer,) = _caches(proxy.url, unique_namespace, 1, timeout=0.5, breaker_threshold=100)
    (reader,) = _caches(private_redis.url, unique_namespace, 1)
    db = {1: 1}
    read_row = _row_of(reader, db)
    write_row = _row_of(writer, db)
    try:
        assert write_row(1) == 1  # the writer has met the server (and checked it)
        _wait_for_an_extended_hit(reader, read_row, 1)
        proxy.set_mode("blackhole")
        db[1] = 2
        writer.invalidate_sync("rows:*")  # kept: Redis does not answer
        assert writer.health()["pending_invalidations"] == 1
        proxy.set_mode("pass")
        deadline = time.monotonic() + 30
        while reader.stats()["rows"].near_push_drops == 0:
            assert time.monotonic() < deadline, writer.health()
            time.sleep(0.02)
        assert read_row(1) == 2
    finally:
        proxy.set_mode("pass")
        writer.close()
        reader.close()
