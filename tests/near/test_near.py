"""The near cache (``near_lease``) against real Redis servers: the consistency promise across
processes (commit-wait), no shared mutable values, no hit past a lease while Redis is
unreachable, the memory bounds, the options, and Redis Cluster.

No verdict depends on speed: races are driven by pipes and events; where a lease must have run
out, the near table is given a clock the test moves (or, across processes, the writer's own
commit-wait is what the assertion checks)."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
from pathlib import Path
from typing import Any

import orjson
import pytest

from freshcache import Cache

LONG_LEASE = 1.0  # seconds: long enough that a reader's lease outlives the writer without it


class MovingClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reader(url: str, namespace: str, source: str, conn: multiprocessing.connection.Connection):
    """Process B: reads through its own near cache; each message from A asks for one read."""
    cache = Cache.from_url(url, namespace=namespace, timeout=2.0, near_lease=LONG_LEASE)

    @cache.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> dict[str, Any]:
        return {"id": row_id, "text": Path(source).read_text()}

    while (msg := conn.recv()) != "stop":
        conn.send(row(1)["text"])
        if msg == "read-twice":  # the second read validates nothing new: a near hit if in lease
            conn.send(row(1)["text"])
    cache.close()


def test_a_read_after_an_invalidation_returned_in_another_process_sees_the_new_value(
    redis_url: str, unique_namespace: str, tmp_path: Path
) -> None:
    source = tmp_path / "row.txt"
    source.write_text("old")
    writer = Cache.from_url(
        redis_url, namespace=unique_namespace, timeout=2.0, near_lease=LONG_LEASE
    )
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    process = ctx.Process(target=_reader, args=(redis_url, unique_namespace, str(source), there))
    process.start()
    try:
        here.send("read-twice")
        # B computed and stored "old", then validated its near entry of it just now.
        assert here.recv() == "old"
        assert here.recv() == "old"
        source.write_text("new")
        writer.invalidate_sync("rows:*")  # returns once B's lease on "old" has run out
        waited = writer.stats()["rows"].near_wait_count
        here.send("read")
        assert here.recv() == "new"
        assert waited == 1
    finally:
        here.send("stop")
        process.join(30)
        writer.close()


def test_commit_wait_covers_exact_keys_and_units_of_work(
    redis_url: str, unique_namespace: str
) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=0.01)
    version = {"n": 0}

    @cache.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> int:
        return version["n"]

    assert row(1) == 0
    assert row(1) == 0
    version["n"] = 1
    row.invalidate(1)
    assert row(1) == 1
    version["n"] = 2
    with cache.deferred():
        cache.invalidate_sync("rows:*")
    assert row(1) == 2
    stats = cache.stats()["rows"]
    assert stats.near_wait_count == 2
    assert stats.near_wait_sum >= 2 * 0.01
    cache.close()


def test_a_value_mutated_by_one_caller_is_not_seen_by_another(
    redis_url: str, unique_namespace: str
) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=60)

    @cache.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> dict[str, Any]:
        return {"id": row_id, "tags": ["a"]}

    row(1)
    first = row(1)  # validated by Redis, kept near
    first["tags"].append("mutated")
    first["id"] = -1
    second = row(1)  # a near hit
    assert second == {"id": 1, "tags": ["a"]}
    assert cache.stats()["rows"].near_hits >= 1
    cache.close()


async def test_async_near_hits_are_fresh_values_and_invalidation_waits(
    redis_url: str, unique_namespace: str
) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=60)
    cache.engine.near.clock = MovingClock()  # type: ignore[union-attr]
    version = {"n": 0}

    @cache.cached(ttl=60, key_prefix="rows:{row_id}")
    async def row(row_id: int) -> dict[str, Any]:
        return {"n": version["n"]}

    assert await row(1) == {"n": 0}
    near_value = await row(1)
    near_value["n"] = 99
    assert await row(1) == {"n": 0}
    assert cache.stats()["rows:{row_id}"].near_hits == 1
    # The invalidating process drops its own entries at once, whatever the lease.
    version["n"] = 1
    cache.engine.near.lease = 0.001  # type: ignore[union-attr]
    await cache.invalidate("rows:1:*")
    assert await row(1) == {"n": 1}
    await cache.aclose()


def test_no_near_hit_past_its_lease_while_redis_is_unreachable(
    private_redis: Any, fault_proxy: Any, unique_namespace: str
) -> None:
    proxy = fault_proxy(*private_redis.address)
    cache = Cache.from_url(
        proxy.url, namespace=unique_namespace, timeout=0.2, near_lease=5.0, breaker_threshold=100
    )
    clock = MovingClock()
    cache.engine.near.clock = clock  # type: ignore[union-attr]
    calls = {"n": 0}

    @cache.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> int:
        calls["n"] += 1
        return calls["n"]

    assert row(1) == 1
    assert row(1) == 1  # validated; kept near for 5 s of the moving clock
    proxy.set_mode("blackhole")
    clock.now += 4.9
    assert row(1) == 1  # within its lease: served without Redis
    near_hits = cache.stats()["rows"].near_hits
    clock.now += 0.2  # past the lease
    assert row(1) == 2  # Redis unreachable: computed, never the near entry
    assert cache.stats()["rows"].near_hits == near_hits
    assert len(cache.engine.near) == 0  # type: ignore[arg-type]
    proxy.set_mode("pass")
    cache.close()


def test_the_table_is_bounded_by_entries_and_bytes(redis_url: str, unique_namespace: str) -> None:
    cache = Cache.from_url(
        redis_url + "?near_lease=60&near_max_entries=5&near_max_bytes=100000",
        namespace=unique_namespace,
        timeout=2.0,
    )
    near = cache.engine.near
    assert near is not None
    assert (near.lease, near.max_entries, near.max_bytes) == (60.0, 5, 100000)

    @cache.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> str:
        return "x" * 30_000

    for i in range(20):
        row(i)
        row(i)
        assert len(near) <= 5
        assert near.bytes <= 100_000
    assert len(near) == 3  # three 30 kB payloads fit in 100 kB
    assert near.evictions > 0
    assert [row(i) for i in range(20)] == ["x" * 30_000] * 20
    cache.close()


def test_near_false_opts_a_function_out(redis_url: str, unique_namespace: str) -> None:
    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=60)

    @cache.cached(ttl=60, key_prefix="rows", near=False)
    def row(row_id: int) -> int:
        return 1

    row(1)
    row(1)
    assert len(cache.engine.near) == 0  # type: ignore[arg-type]
    assert cache.stats()["rows"].near_hits == 0
    assert cache.stats()["rows"].hits == 1
    cache.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("memory://", {"near_lease": 0.05}, "memory:// is already in-process"),
        ("redis://127.0.0.1:1/0?near_lease=soon", {}, "near_lease='soon' is not a number"),
        ("redis://127.0.0.1:1/0", {"near_lease": -1}, "near_lease must be"),
        ("redis://127.0.0.1:1/0", {"near_lease": 1, "near_max_entries": 0}, "must be positive"),
    ],
)
def test_bad_near_options_are_refused_clearly(url: str, options: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cache.from_url(url, **options)


async def test_on_redis_cluster(redis_cluster_url: str, unique_namespace: str) -> None:
    cache = Cache.from_url(
        redis_cluster_url, namespace=unique_namespace, timeout=2.0, near_lease=60
    )
    version = {"n": 0}

    @cache.cached(ttl=60, key_prefix="rows:{row_id}")
    async def row(row_id: int) -> int:
        return version["n"]

    assert await row(1) == 0
    assert await row(1) == 0
    assert await row(1) == 0
    assert cache.stats()["rows:{row_id}"].near_hits >= 1
    version["n"] = 1
    cache.engine.near.lease = 0.001  # type: ignore[union-attr]
    await cache.invalidate("rows:1:*")
    assert await row(1) == 1
    await asyncio.sleep(0)
    await cache.aclose()


def test_prometheus_shows_near_hits_and_the_commit_wait(
    redis_url: str, unique_namespace: str
) -> None:
    from freshcache.contrib.prometheus import render_metrics

    cache = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=0.01)

    @cache.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> int:
        return 1

    row(1)
    row(1)
    cache.engine.near.lease = 60  # type: ignore[union-attr]
    row(1)
    row(1)
    cache.invalidate_sync("rows:*")
    text = render_metrics(cache).decode()
    assert f'freshcache_near_hits_total{{namespace="{unique_namespace}",prefix="rows"}}' in text
    assert (
        f'freshcache_near_wait_seconds_count{{namespace="{unique_namespace}",prefix="rows"}} 1.0'
        in text
    )
    cache.close()


def test_other_processes_drop_their_entries_on_the_push(
    redis_url: str, unique_namespace: str
) -> None:
    import time

    # Two caches of one namespace stand for two processes (each has its own push identity).
    # The reader's lease is long on purpose: only the push can drop its entry within this test.
    reader = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=60)
    writer = Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0, near_lease=0.01)

    @reader.cached(ttl=60, key_prefix="rows")
    def row(row_id: int) -> int:
        return 1

    row(1)
    row(1)
    near = reader.engine.near
    assert near is not None
    assert len(near) == 1
    assert reader.engine.near_io is not None
    assert reader.engine.near_io.push.subscribed.wait(30)
    writer.invalidate_sync("rows:*")
    deadline = time.monotonic() + 30  # generous: the push is asynchronous, never on time
    while len(near) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(near) == 0
    assert reader.stats()["rows"].near_push_drops == 1
    reader.close()
    writer.close()


def test_immutable_values_are_decoded_once_per_entry_mutable_ones_every_hit() -> None:
    from freshcache._engine.near import NearEntry, decoded

    decodes: list[bytes] = []

    def decode(payload: bytes) -> Any:
        decodes.append(payload)
        return orjson.loads(payload)

    text = NearEntry(b'"hibachi"', deadline=10.0, refresh_at=5.0, size=1)
    assert [decoded(text, decode) for _ in range(3)] == ["hibachi"] * 3
    assert len(decodes) == 1  # a str cannot be changed by a caller: kept decoded
    rows = NearEntry(b'{"rows": [1, 2]}', deadline=10.0, refresh_at=5.0, size=1)
    first = decoded(rows, decode)
    first["rows"].append(3)  # one caller mutates its value
    assert decoded(rows, decode) == {"rows": [1, 2]}  # the next hit is decoded afresh
    assert len(decodes) == 3


def test_hot_entries_are_revalidated_a_few_measured_round_trips_before_their_deadline() -> None:
    """The margin follows the measured round trip (4 of them, at least 2 ms, at most half the
    lease), so a hot key costs about one revalidation per lease instead of two."""
    from freshcache._engine.near import NearCache

    near = NearCache(lease=0.1, max_entries=10, max_bytes=10_000, clock=lambda: 0.0)
    near.put("k", b"v", t0=0.0, epoch=near.epoch)
    assert near.get("k", 0.0).refresh_at == pytest.approx(0.05)  # type: ignore[union-attr]
    for _ in range(50):
        near.observe_round_trip(0.001)
    assert near.ahead == pytest.approx(0.004)
    near.put("k", b"v", t0=1.0, epoch=near.epoch)
    assert near.get("k", 1.0).refresh_at == pytest.approx(1.096)  # type: ignore[union-attr]
    near.observe_round_trip(1.0)  # one very slow read: never more than half the lease
    assert near.ahead == pytest.approx(0.05)
    for _ in range(200):
        near.observe_round_trip(0.0)
    assert near.ahead == pytest.approx(0.002)  # the floor


def test_only_an_entry_hit_again_past_its_refresh_time_is_revalidated_ahead() -> None:
    """A key read about once a lease is not revalidated ahead (it would cost the round trip it
    saves); one read again since it was validated is."""
    from freshcache._engine.near import NearEntry

    entry = NearEntry(b"1", deadline=10.0, refresh_at=5.0, size=1)
    assert not entry.hit_due(6.0)  # the first hit since validation, past refresh_at
    assert entry.hit_due(6.5)  # hit again: hot
    fresh = NearEntry(b"1", deadline=10.0, refresh_at=5.0, size=1)
    assert not fresh.hit_due(1.0)
    assert not fresh.hit_due(2.0)  # hot, but not yet due
    assert fresh.hit_due(5.0)
