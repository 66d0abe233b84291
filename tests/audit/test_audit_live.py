"""Live checks against a real (private) Redis and a /metrics endpoint served here.

Keys are planted under ``unique_namespace`` and deleted by name afterwards: never a flush.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from audit_support import ROOT

from freshcache.audit import run_audit
from freshcache.audit.config import AuditConfig
from freshcache.audit.live import live_report
from freshcache.cli import main

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


@pytest.fixture
def metrics_url() -> Iterator[str]:
    body = METRICS.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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


@pytest.mark.usefixtures("wide")
def test_keys_and_stats_commands(
    redis_url: str, planted: str, metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", redis_url, "booking:stats:*", "-n", planted]) == 0
    out = capsys.readouterr().out
    assert ORPHAN in out
    assert "no expiry" in out
    assert UNKNOWN not in out
    assert "2 key(s)" in out
    assert main(["keys", redis_url, "*", "-n", planted, "--limit", "1"]) == 0
    assert "there are more" in capsys.readouterr().out

    assert main(["stats", redis_url, "-n", planted]) == 0
    out = capsys.readouterr().out
    assert "booking:stats" in out
    assert "/metrics" in out  # says where the counters live

    assert main(["stats", metrics_url]) == 0
    out = capsys.readouterr().out
    assert "90.0%" in out
    assert "25.0%" in out
    assert "breaker: closed" in out
    assert main(["stats", metrics_url, "--watch", "0.2", "--count", "2"]) == 0


@pytest.mark.usefixtures("wide")
def test_invalidate_and_inspect_through_the_cache(
    redis_url: str, unique_namespace: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import freshcache

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
    client = redis.Redis.from_url(redis_url)
    try:
        assert main(["inspect", redis_url, key, "-n", unique_namespace, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["state"] == "entry"
        assert info["valid"] is True
        assert info["value"] == {"bookings": 3}
        assert main(["inspect", redis_url, key, "-n", unique_namespace]) == 0
        assert "entry" in capsys.readouterr().out

        assert main(["invalidate", redis_url, "booking:stats:*", "-n", unique_namespace]) == 0
        assert "generation token replaced" in capsys.readouterr().out
        assert main(["inspect", redis_url, key, "-n", unique_namespace, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["valid"] is False

        absent = "booking:stats:nothing:0000000000000000"
        assert main(["inspect", redis_url, absent, "-n", unique_namespace]) == 1
        capsys.readouterr()
    finally:
        leftovers = list(client.scan_iter(match=f"{unique_namespace}:*", count=500))
        if leftovers:
            client.delete(*leftovers)
        client.close()
