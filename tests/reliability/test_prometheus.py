"""Prometheus text exposition of the per-prefix counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from freshcache import Cache
from freshcache.contrib.prometheus import render_metrics


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_text_has_the_scripted_counts(cache: Cache) -> None:
    @cache.cached(ttl=60, key_prefix="booking:stats")
    async def stats() -> int:
        return 1

    await stats()  # miss + set
    await stats()  # hit
    await stats()  # hit
    await cache.invalidate("booking:*")
    await stats()  # stale (old tokens) + set
    await cache.invalidate("booking:*:x")  # not segment-aligned: scan

    samples = _samples(render_metrics(cache))
    ns = cache.namespace

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted({"namespace": ns, **labels}.items())))
        return samples[key]

    assert value("freshcache_hits_total", prefix="booking:stats") == 2
    assert value("freshcache_misses_total", prefix="booking:stats") == 1
    assert value("freshcache_stale_total", prefix="booking:stats") == 1
    assert value("freshcache_sets_total", prefix="booking:stats") == 2
    # Counted under the read prefix it reached, not under the pattern.
    assert value("freshcache_invalidations_total", prefix="booking:stats", kind="generation") == 1
    assert value("freshcache_invalidations_total", prefix="booking:*:x", kind="scan") == 1
    assert value("freshcache_latency_seconds_count", prefix="booking:stats") == 4
    assert value("freshcache_pending_invalidations") == 0
    assert value("freshcache_breaker_state") == 0
