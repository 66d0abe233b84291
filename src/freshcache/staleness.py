"""The stale-hit rate that the sampled shadow reads measured, read back from a service's
Prometheus exposition (``freshcache_shadow_checks_total``, ``freshcache_stale_hits_total``).

For tools such as ``freshcache audit --live --metrics URL``: pure, no engine, no backend;
prometheus-client is imported only when a text is parsed.
"""

from __future__ import annotations

import dataclasses

CHECKS = "freshcache_shadow_checks_total"
STALE = "freshcache_stale_hits_total"


@dataclasses.dataclass(frozen=True, slots=True)
class MeasuredStaleness:
    """One key prefix of one namespace: how many hits were re-checked, how many were stale."""

    namespace: str
    prefix: str
    shadow_checks: float
    stale_hits: float

    @property
    def rate(self) -> float | None:
        """stale_hits / shadow_checks; None before any check (nothing measured yet)."""
        return self.stale_hits / self.shadow_checks if self.shadow_checks else None


def measured_staleness(text: str) -> list[MeasuredStaleness]:
    """Every (namespace, prefix) with shadow-read counters in ``text``, sorted. Empty when the
    service runs with ``verify_rate`` 0. Raises ValueError for text that is not Prometheus's,
    ImportError (with the install hint) without prometheus-client."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        raise ImportError(
            "reading shadow-read metrics needs prometheus-client: "
            "pip install 'freshcache[prometheus]'"
        ) from None
    found: dict[tuple[str, str], list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name not in (CHECKS, STALE):
                    continue
                key = (sample.labels.get("namespace", ""), sample.labels.get("prefix", ""))
                counts = found.setdefault(key, [0.0, 0.0])
                counts[0 if sample.name == CHECKS else 1] += sample.value
    except ValueError as exc:
        raise ValueError(f"not a Prometheus text exposition: {exc}") from None
    return [
        MeasuredStaleness(namespace, prefix, checks, stale)
        for (namespace, prefix), (checks, stale) in sorted(found.items())
    ]
