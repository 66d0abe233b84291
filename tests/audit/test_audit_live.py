"""Live checks against a real (private) Redis and a /metrics endpoint served here.

(The live commands themselves, keys / stats / invalidate / inspect, are tested in tests/cli.)

Keys are planted under ``unique_namespace`` and deleted by name afterwards: never a flush.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from audit_support import ROOT

import freshcache
from freshcache.audit import run_audit
from freshcache.audit.config import AuditConfig
from freshcache.audit.live import live_report
from freshcache.cli import main
from support.metrics_http import serve_metrics

SERVICE = ROOT / "src" / "myhibachi"
HASH = "0123456789abcdef"
STATS = "booking:stats:BookingService.get_dashboard_stats"
AVAILABILITY = "booking:availability:2030-10-11:BookingService.get_available_slots"
ORPHAN = f"{STATS}:fedcba9876543210"
UNKNOWN = f"legacy:v0:report:{HASH}"

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
def planted(redis_url: str, unique_namespace: str) -> Iterator[str]:
    """Two live entries, a token, one orphan (no TTL) and one key under no declared prefix."""
    client = redis.Redis.from_url(redis_url)
    ns = unique_namespace
    keys = {
        f"{ns}:{STATS}:{HASH}": 60_000,
        f"{ns}:{AVAILABILITY}:{HASH}": 60_000,
        f"{ns}:__gen__:booking": 600_000,
        f"{ns}:{ORPHAN}": None,
        f"{ns}:{UNKNOWN}": 60_000,
    }
    try:
        for key, ttl in keys.items():
            client.set(key, b"x" * 100, px=ttl)
        yield ns
    finally:
        client.delete(*keys)
        client.close()


# What a service running with verify_rate exports: one prefix had 3 stale hits in 600 checks.
SHADOW_METRICS = (
    METRICS
    + """\
# TYPE freshcache_shadow_checks_total counter
freshcache_shadow_checks_total{namespace="NS",prefix="booking:stats"} 600
freshcache_shadow_checks_total{namespace="NS",prefix="booking:availability:{event_date}"} 200
freshcache_shadow_checks_total{namespace="other",prefix="booking:stats"} 50
# TYPE freshcache_stale_hits_total counter
freshcache_stale_hits_total{namespace="NS",prefix="booking:stats"} 3
freshcache_stale_hits_total{namespace="NS",prefix="booking:availability:{event_date}"} 0
freshcache_stale_hits_total{namespace="other",prefix="booking:stats"} 50
"""
)


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with serve_metrics(METRICS) as url:
        yield url


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich would shorten long keys at 80 columns
    monkeypatch.chdir(ROOT)


def test_live_report_finds_the_planted_orphan(redis_url: str, planted: str) -> None:
    reads = run_audit([SERVICE], root=ROOT).reads
    report = asyncio.run(live_report(redis_url, planted, reads, AuditConfig()))
    assert report.error == ""
    assert report.scan_complete
    assert report.sampled_keys == 5
    assert report.orphans == (ORPHAN,)
    assert report.unknown_prefix == (UNKNOWN,)
    memory = {label: keys for label, keys, _bytes in report.memory_by_prefix}
    assert memory["booking:stats"] == 2
    assert memory["booking:availability:{event_date}"] == 1
    assert memory["__gen__"] == 1
    assert memory["(undeclared) legacy:v0"] == 1


@pytest.mark.usefixtures("wide")
def test_audit_live_with_metrics(
    redis_url: str, planted: str, metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "src/myhibachi", "--live", redis_url, "-n", planted, "--metrics", metrics_url]
    assert main([*argv, "-f", "json"]) == 0  # live findings are warnings
    doc = json.loads(capsys.readouterr().out)
    rules = sorted(f["rule"] for f in doc["findings"] if f["location"] is None)
    assert rules == ["FC201", "FC202", "FC203"]
    checks = {c["id"]: c["status"] for c in doc["checklist"]}
    assert checks["no-orphans"] == "FAIL"
    assert checks["known-prefixes"] == "FAIL"
    assert checks["hit-ratio"] == "FAIL"  # availability: 10 of 40 = 25 % < 50 %
    assert checks["backend-healthy"] == "PASS"
    assert doc["live"]["orphans"] == {"count": 1, "examples": [ORPHAN]}
    assert main([*argv, "--fail-on", "warning", "-f", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    live_results = [r for r in sarif["runs"][0]["results"] if "locations" not in r]
    assert len(live_results) == 3
    assert main([*argv, "-f", "md"]) == 0
    md = capsys.readouterr().out
    assert "## Live backend" in md
    assert "25.0%" in md


@pytest.mark.usefixtures("wide")
def test_audit_live_without_metrics_says_na(
    redis_url: str, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "src/myhibachi", "--live", redis_url, "-n", planted, "-f", "json"]) == 0
    checks = {c["id"]: c for c in json.loads(capsys.readouterr().out)["checklist"]}
    assert checks["hit-ratio"]["status"] == "N/A"
    assert "--metrics" in checks["hit-ratio"]["evidence"]


# Module level: the key holds the qualname, which must be the audited code's ("report").
async def report(day: int) -> int:
    return day


async def legacy(day: int) -> int:
    return day


async def _fill_cluster(url: str, namespace: str) -> tuple[int, int]:
    """Entries under a prefix the audited code declares and under one it does not."""
    cache = freshcache.Cache.from_url(url, namespace=namespace, timeout=2.0)
    try:
        cached_report = cache.cached(ttl=60, key_prefix="report:{day}")(report)
        cached_legacy = cache.cached(ttl=60, key_prefix="legacy:{day}")(legacy)
        for day in range(30):
            await cached_report(day)
        for day in range(7):
            await cached_legacy(day)
        return 30, 7
    finally:
        await cache.aclose()


async def _drop_cluster(url: str, namespace: str) -> None:
    cache = freshcache.Cache.from_url(url, namespace=namespace, timeout=2.0)
    try:
        await cache.invalidate("*")
    finally:
        await cache.aclose()


def test_audit_live_on_a_cluster_samples_every_primary(
    redis_cluster_url: str,
    unique_namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "reports.py").write_text(
        "from freshcache import cached, invalidate_cache\n\n\n"
        '@cached(ttl=60, key_prefix="report:{day}")\n'
        "async def report(day: int) -> int:\n    return day\n\n\n"
        '@invalidate_cache("report:*")\nasync def rebuild() -> None:\n    pass\n',
        encoding="utf-8",
    )
    declared, undeclared = asyncio.run(_fill_cluster(redis_cluster_url, unique_namespace))
    try:
        argv = ["audit", str(tmp_path), "--live", redis_cluster_url, "-n", unique_namespace]
        code = main([*argv, "-f", "json", "--fail-on", "never"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        live = json.loads(captured.out)["live"]
    finally:
        asyncio.run(_drop_cluster(redis_cluster_url, unique_namespace))
    assert live["error"] is None, live["error"]
    # 37 entries spread by their hash tags over the three primaries: all of them are seen
    assert live["sampled_keys"] == declared + undeclared
    assert live["scan_complete"] is True
    assert live["unknown_prefix"]["count"] == undeclared
    assert all(key.startswith("legacy:") for key in live["unknown_prefix"]["examples"])
    assert live["url"].startswith("redis+cluster://")


@pytest.mark.usefixtures("wide")
def test_audit_live_reports_the_stale_hits_shadow_reads_measured(
    redis_url: str, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service's shadow reads (verify_rate) counted stale hits: the audit reports the
    measured rate per prefix of the audited namespace, and a prefix with stale hits is an
    error (a write path lacks an invalidation), whatever other namespaces measured."""
    with serve_metrics(SHADOW_METRICS.replace('"NS"', f'"{planted}"')) as url:
        argv = ["audit", "src/myhibachi", "--live", redis_url, "-n", planted, "--metrics", url]
        assert main([*argv, "-f", "json"]) == 1  # FC207 is an error
        doc = json.loads(capsys.readouterr().out)
        assert doc["live"]["stale_hits"] == [
            {"prefix": "booking:availability:{event_date}", "rate": 0.0, "checks": 200,
             "stale": 0},
            {"prefix": "booking:stats", "rate": 0.005, "checks": 600, "stale": 3},
        ]  # fmt: skip
        stale = [f for f in doc["findings"] if f["rule"] == "FC207"]
        assert len(stale) == 1
        assert "3 of 600" in stale[0]["message"]
        assert "booking:stats" in stale[0]["message"]
        assert main([*argv, "-f", "md"]) == 1
        md = capsys.readouterr().out
        assert "Measured stale hits (shadow reads)" in md
        assert "0.50%" in md


@pytest.mark.usefixtures("wide")
def test_audit_live_without_shadow_counters_says_how_to_measure(
    redis_url: str, planted: str, metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "src/myhibachi", "--live", redis_url, "-n", planted, "--metrics", metrics_url]
    assert main([*argv, "-f", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["live"]["stale_hits"] == []
    assert not [f for f in doc["findings"] if f["rule"] == "FC207"]
    assert main([*argv, "-f", "md"]) == 0
    assert "verify_rate" in capsys.readouterr().out
