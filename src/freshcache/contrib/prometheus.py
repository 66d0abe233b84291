"""Prometheus exposition of ``cache.stats()`` (extra: ``freshcache[prometheus]``).

    from freshcache.contrib.prometheus import render_metrics
    body = render_metrics(cache)          # bytes, content type CONTENT_TYPE_LATEST

or register ``FreshcacheCollector(cache)`` in your own registry. Counters are read from the
cache's snapshot at scrape time: nothing is added to the hit path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "freshcache.contrib.prometheus needs prometheus-client: "
        "pip install 'freshcache[prometheus]'"
    ) from exc

from freshcache.cache import Cache
from freshcache.metrics import LATENCY_BUCKETS, NEAR_WAIT_BUCKETS
from freshcache.resilience import BreakerState

__all__ = ["CONTENT_TYPE_LATEST", "FreshcacheCollector", "render_metrics"]

BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class FreshcacheCollector(Collector):
    """Collects the counters of one or more caches, labelled by namespace and key prefix."""

    def __init__(self, *caches: Cache) -> None:
        self.caches = caches

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "prefix"]
        simple = {
            "hits": CounterMetricFamily("freshcache_hits", "Cache hits.", labels=labels),
            "misses": CounterMetricFamily("freshcache_misses", "Cache misses.", labels=labels),
            "stale": CounterMetricFamily(
                "freshcache_stale",
                "Entries rejected: computed under replaced tokens.",
                labels=labels,
            ),
            "sets": CounterMetricFamily("freshcache_sets", "Entries stored.", labels=labels),
            "lock_waits": CounterMetricFamily(
                "freshcache_lock_waits", "Callers that waited on another's lock.", labels=labels
            ),
            "early_refreshes": CounterMetricFamily(
                "freshcache_early_refreshes", "Probabilistic early recomputations.", labels=labels
            ),
            # The sampled shadow reads (verify_rate): stale_hits / shadow_checks is the
            # measured share of hits served although the source had changed.
            "shadow_checks": CounterMetricFamily(
                "freshcache_shadow_checks",
                "Hits recomputed in the background and compared with the cached value.",
                labels=labels,
            ),
            "stale_hits": CounterMetricFamily(
                "freshcache_stale_hits",
                "Shadow checks whose fresh value differed from a hit never invalidated.",
                labels=labels,
            ),
            "shadow_errors": CounterMetricFamily(
                "freshcache_shadow_errors",
                "Shadow checks that failed (the function or the backend raised).",
                labels=labels,
            ),
        }
        invalidations = CounterMetricFamily(
            "freshcache_invalidations", "Invalidations applied, by kind.", labels=[*labels, "kind"]
        )
        errors = CounterMetricFamily(
            "freshcache_errors", "Errors by kind (backend, decode, encode, oversize).",
            labels=[*labels, "kind"],
        )  # fmt: skip
        bypasses = CounterMetricFamily(
            "freshcache_bypasses", "Calls that ran uncached, by reason.", labels=[*labels, "reason"]
        )
        latency = HistogramMetricFamily(
            "freshcache_latency_seconds", "Cached call latency (hits and misses).", labels=labels
        )
        pending = GaugeMetricFamily(
            "freshcache_pending_invalidations",
            "Invalidations kept for replay while the backend is unreachable.",
            labels=["namespace"],
        )
        breaker = GaugeMetricFamily(
            "freshcache_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=["namespace"],
        )  # fmt: skip
        # The near cache's, only for caches that have one (``near_lease``).
        near = {
            "near_hits": CounterMetricFamily(
                "freshcache_near_hits", "Hits served from the near cache.", labels=labels
            ),
            "near_revalidations": CounterMetricFamily(
                "freshcache_near_revalidations",
                "Background revalidations of hot near entries.",
                labels=labels,
            ),
            "near_push_drops": CounterMetricFamily(
                "freshcache_near_push_drops",
                "Near entries dropped on another process's push.",
                labels=labels,
            ),
        }
        near_wait = HistogramMetricFamily(
            "freshcache_near_wait_seconds",
            "Invalidations' commit-wait for the near cache's leases.",
            labels=labels,
        )
        for cache in self.caches:
            ns = cache.namespace
            if cache.engine.near is not None:
                for prefix, stats in cache.stats().items():
                    for name, family in near.items():
                        family.add_metric([ns, prefix], getattr(stats, name))
                    if stats.near_wait_buckets:
                        near_wait.add_metric(
                            [ns, prefix],
                            _cumulative(stats.near_wait_buckets, NEAR_WAIT_BUCKETS),
                            stats.near_wait_sum,
                        )
            for prefix, stats in cache.stats().items():
                for name, family in simple.items():
                    family.add_metric([ns, prefix], getattr(stats, name))
                for kind, count in stats.invalidations.items():
                    invalidations.add_metric([ns, prefix, kind], count)
                for kind, count in stats.errors_by_kind.items():
                    errors.add_metric([ns, prefix, kind], count)
                for reason, count in stats.bypasses_by_reason.items():
                    bypasses.add_metric([ns, prefix, reason], count)
                latency.add_metric(
                    [ns, prefix], _cumulative(stats.latency_buckets), stats.latency_sum
                )
            pending.add_metric([ns], len(cache.pending))
            breaker.add_metric([ns], BREAKER_VALUES[cache.breaker.state])
        yield from simple.values()
        yield from (invalidations, errors, bypasses, latency, pending, breaker)
        if any(cache.engine.near is not None for cache in self.caches):
            yield from (*near.values(), near_wait)


def _cumulative(
    buckets: Iterable[int], limits: Iterable[float] = LATENCY_BUCKETS
) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0
    bounds = [*(str(b) for b in limits), "+Inf"]
    for bound, count in zip(bounds, buckets, strict=True):
        total += count
        out.append((bound, total))
    return out


def render_metrics(*caches: Cache, registry: CollectorRegistry | None = None) -> bytes:
    """Prometheus text for ``caches`` (plus whatever ``registry`` already holds)."""
    target = CollectorRegistry(auto_describe=False) if registry is None else registry
    collector = FreshcacheCollector(*caches)
    target.register(collector)
    try:
        return generate_latest(target)
    finally:
        target.unregister(collector)
