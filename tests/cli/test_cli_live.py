"""The live commands on the suite's real Redis and Redis Cluster: stats, keys, invalidate,
inspect; tables at 80 columns and ``--json`` on each.

(Moved here from tests/audit/test_audit_live.py, which keeps the live *audit*.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
from cli_support import has_whole, lines_of, run, serve_metrics

import freshcache

HASH = "0123456789abcdef"
STATS = "booking:stats:BookingService.get_dashboard_stats"
AVAILABILITY = "booking:availability:2030-10-11:BookingService.get_available_slots"
ORPHAN = f"{STATS}:fedcba9876543210"
UNKNOWN = f"legacy:v0:report:{HASH}"
LONG_PREFIX = "booking:availability:{event_date}:with:a:rather:long:tail"
BIG = f"""\
# TYPE freshcache_hits_total counter
freshcache_hits_total{{prefix="booking:stats"}} 123456789
freshcache_hits_total{{prefix="{LONG_PREFIX}"}} 10
# TYPE freshcache_misses_total counter
freshcache_misses_total{{prefix="booking:stats"}} 9876543
freshcache_misses_total{{prefix="{LONG_PREFIX}"}} 30
"""

METRICS = """\
# HELP freshcache_hits_total Cache hits.
# TYPE freshcache_hits_total counter
freshcache_hits_total{prefix="booking:stats"} 90
freshcache_hits_total{prefix="booking:availability:{event_date}"} 10
# TYPE freshcache_misses_total counter
freshcache_misses_total{prefix="booking:stats"} 10
freshcache_misses_total{prefix="booking:availability:{event_date}"} 30
# TYPE freshcache_stale_total counter
freshcache_stale_total{prefix="booking:availability:{event_date}"} 0
# TYPE freshcache_invalidations_total counter
freshcache_invalidations_total{prefix="booking:stats",kind="generation"} 4
# TYPE freshcache_breaker_state gauge
freshcache_breaker_state 0
# TYPE freshcache_pending_invalidations gauge
freshcache_pending_invalidations 0
"""


@pytest.fixture
def planted(unique_namespace: str, redis_client: redis.Redis) -> str:
    """Two live entries, a token, one orphan (no TTL) and one key under no declared prefix."""
    ns = unique_namespace
    for key, ttl in {
        f"{ns}:{STATS}:{HASH}": 60_000,
        f"{ns}:{AVAILABILITY}:{HASH}": 60_000,
        f"{ns}:__gen__:booking": 600_000,
        f"{ns}:{ORPHAN}": None,
        f"{ns}:{UNKNOWN}": 60_000,
    }.items():
        redis_client.set(key, b"x" * 100, px=ttl)
    return ns


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with serve_metrics(METRICS) as url:
        yield url


@pytest.mark.usefixtures("narrow")
def test_keys_and_stats_commands(
    redis_url: str, planted: str, metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["keys", redis_url, "booking:stats:*", "-n", planted], capsys)
    assert code == 0
    assert has_whole(out, ORPHAN)
    assert has_whole(out, f"{STATS}:{HASH}")
    assert "no expiry" in out
    assert UNKNOWN not in out
    assert "2 key(s)" in out
    code, out, _ = run(["keys", redis_url, "*", "-n", planted, "--limit", "1"], capsys)
    assert "there are more" in out

    code, out, _ = run(["stats", redis_url, "-n", planted], capsys)
    assert code == 0
    assert has_whole(out, "booking:availability:2030-10-11")
    assert has_whole(out, "booking:stats")
    assert "/metrics" in out  # says where the counters live

    code, out, _ = run(["stats", metrics_url], capsys)
    assert code == 0
    assert "90.0%" in out
    assert "25.0%" in out
    assert "breaker: closed" in out
    assert main_ok(["stats", metrics_url, "--watch", "0.2", "--count", "2"], capsys)


def main_ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> bool:
    code, _out, err = run(argv, capsys)
    assert err == ""
    return code == 0


@pytest.mark.usefixtures("narrow")
def test_stats_at_80_columns_keeps_prefixes_whole_and_folds_the_numbers(
    metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in (metrics_url, None):
        if url is None:
            with serve_metrics(BIG) as big:
                code, out, _ = run(["stats", big], capsys)
            prefixes = ["booking:stats", LONG_PREFIX]
        else:
            code, out, _ = run(["stats", url], capsys)
            prefixes = ["booking:stats", "booking:availability:{event_date}"]
        assert code == 0
        assert all(len(line) <= 80 for line in out.splitlines()), out
        for prefix in prefixes:
            assert prefix in lines_of(out), f"{prefix!r} not on a line of its own:\n{out}"
        assert "…" not in out
    assert "hits=123456789" in out  # folded onto the record's own lines, never cut
    assert "hit_ratio=92.6%" in out  # 123456789 / (123456789 + 9876543)
    assert "hit_ratio=25.0%" in out


def test_stats_shrinks_numbers_before_it_folds_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    one = "\n".join(line for line in BIG.splitlines() if LONG_PREFIX not in line) + "\n"
    with serve_metrics(one) as url:
        monkeypatch.setenv("COLUMNS", "96")  # whole numbers need 103 columns, short ones 96
        code, out, _ = run(["stats", url], capsys)
        assert code == 0
        assert "│ 123M │   9.9M │" in out
        assert "┃ prefix" in out  # still a table
        assert all(len(line) <= 96 for line in out.splitlines()), out
        monkeypatch.setenv("COLUMNS", "200")
        code, out, _ = run(["stats", url], capsys)
        assert "123456789" in out


def test_stats_json(
    redis_url: str, planted: str, metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["stats", metrics_url, "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["source"] == "metrics"
    assert doc["breaker_state"] == "closed"
    by_prefix = {p["prefix"]: p for p in doc["prefixes"]}
    assert by_prefix["booking:stats"]["hits"] == 90
    assert by_prefix["booking:stats"]["hit_ratio"] == pytest.approx(0.9)

    code, out, _ = run(["stats", redis_url, "-n", planted, "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["source"] == "redis"
    assert doc["sampled_keys"] == 5
    groups = {p["prefix"]: p for p in doc["prefixes"]}
    assert groups["booking:stats"] == {
        "prefix": "booking:stats",
        "keys": 2,
        "without_ttl": 1,
        "bytes": groups["booking:stats"]["bytes"],
    }
    assert groups["booking:stats"]["bytes"] >= 200

    code, out, _ = run(["stats", metrics_url, "--json", "--watch", "0.2", "--count", "2"], capsys)
    assert code == 0
    documents = [json.loads(line) for line in out.splitlines()]
    assert len(documents) == 2  # JSON Lines: one document per refresh
    assert all(d["source"] == "metrics" for d in documents)


def test_invalidate_and_inspect_through_the_cache(
    redis_url: str,
    unique_namespace: str,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def store() -> str:
        cache = freshcache.Cache.from_url(redis_url, namespace=unique_namespace, timeout=2.0)
        try:

            @cache.cached(ttl=60, key_prefix="booking:stats")
            async def get_stats() -> dict[str, int]:
                return {"bookings": 3}

            assert await get_stats() == {"bookings": 3}
            (key,) = await cache.keys("booking:stats:*")
            return str(key)
        finally:
            await cache.aclose()

    key = asyncio.run(store())
    ns = unique_namespace
    code, out, _ = run(["inspect", redis_url, key, "-n", ns, "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["state"] == "entry"
    assert info["valid"] is True
    assert info["value"] == {"bookings": 3}
    code, out, _ = run(["inspect", redis_url, key, "-n", ns], capsys)
    assert code == 0
    assert "entry" in out

    code, out, _ = run(["invalidate", redis_url, "booking:stats:*", "-n", ns], capsys)
    assert code == 0
    assert "generation token replaced" in out
    code, out, _ = run(["inspect", redis_url, key, "-n", ns, "--json"], capsys)
    assert json.loads(out)["valid"] is False

    absent = "booking:stats:nothing:0000000000000000"
    code, out, _ = run(["inspect", redis_url, absent, "-n", ns], capsys)
    assert code == 1
    code, out, _ = run(["inspect", redis_url, absent, "-n", ns, "--json"], capsys)
    assert code == 1
    assert json.loads(out)["state"] == "absent"


# -- Redis Cluster: every live command takes redis+cluster://, keys/stats scan every primary --


async def fill_cluster(url: str, namespace: str, days: int) -> list[str]:
    cache = freshcache.Cache.from_url(url, namespace=namespace, timeout=2.0)
    try:

        @cache.cached(ttl=60, key_prefix="user:id:{day}")
        async def per_day(day: int) -> int:
            return day

        for day in range(days):
            await per_day(day)
        return sorted(k.removeprefix(namespace + ":") for k in await cache.keys("*", 1000))
    finally:
        await cache.aclose()


async def drop_cluster_keys(url: str, namespace: str) -> None:
    cache = freshcache.Cache.from_url(url, namespace=namespace, timeout=2.0)
    try:
        await cache.invalidate("*")
    finally:
        await cache.aclose()


@pytest.fixture
def cluster_keys(redis_cluster_url: str, unique_namespace: str) -> Iterator[list[str]]:
    keys = asyncio.run(fill_cluster(redis_cluster_url, unique_namespace, 40))
    yield keys
    asyncio.run(drop_cluster_keys(redis_cluster_url, unique_namespace))


@pytest.mark.usefixtures("narrow")
def test_keys_and_stats_on_a_cluster_see_every_primary(
    redis_cluster_url: str,
    unique_namespace: str,
    cluster_keys: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(cluster_keys) == 40
    ns = unique_namespace
    code, out, err = run(["keys", redis_cluster_url, "*", "-n", ns, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(k["key"] for k in doc["keys"]) == cluster_keys
    assert doc["complete"] is True
    assert all(0 < k["ttl_ms"] <= 60_000 for k in doc["keys"])
    assert all(k["bytes"] > 0 for k in doc["keys"])

    code, out, err = run(["keys", redis_cluster_url, "user:id:7:*", "-n", ns], capsys)
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if "per_day" in line]
    assert line.split()[-1] in cluster_keys
    assert "🆔" not in out

    code, out, _ = run(["keys", redis_cluster_url, "*", "-n", ns, "--limit", "10"], capsys)
    assert "10 key(s)" in out
    assert "there are more" in out

    code, out, err = run(["stats", redis_cluster_url, "-n", ns, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sampled_keys"] == 40
    assert sum(p["keys"] for p in doc["prefixes"]) == 40

    code, out, err = run(["stats", redis_cluster_url, "-n", ns], capsys)
    assert code == 0, err
    assert has_whole(out, "user:id:7")

    code, out, err = run(
        ["inspect", redis_cluster_url, cluster_keys[0], "-n", ns, "--json"], capsys
    )
    assert code == 0, err
    assert json.loads(out)["valid"] is True
    code, out, err = run(["invalidate", redis_cluster_url, "user:id:*", "-n", ns], capsys)
    assert code == 0, err
    code, out, err = run(
        ["inspect", redis_cluster_url, cluster_keys[0], "-n", ns, "--json"], capsys
    )
    assert json.loads(out)["valid"] is False


def test_a_bad_cluster_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(
        ["keys", "redis+cluster://127.0.0.1:notaport", "*", "--timeout", "0.2"], capsys
    )
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
