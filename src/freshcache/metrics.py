"""Outcome counters per key prefix, a latency histogram, and immutable snapshots of them.

Counting must cost next to nothing on the hit path: plain integer attributes on a slotted
object, one per prefix, found with one dict lookup. Exporters (Prometheus, the CLI) read
snapshots; nothing here imports them.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

#: Upper bounds (seconds) of the latency histogram buckets; the last bucket is +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: Bounds (seconds) of the near cache's commit-wait histogram.
NEAR_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Counters:
    """Mutable counters of one prefix. Increments are single bytecodes; no lock on the hot path
    (a lost increment under free-threading would skew a counter, never a cached value)."""

    __slots__ = (
        "bypasses",
        "early_refreshes",
        "errors",
        "hits",
        "invalidations",
        "latency_buckets",
        "latency_count",
        "latency_sum",
        "lock_waits",
        "misses",
        "sets",
        "shadow_checks",
        "shadow_errors",
        "shadow_skipped",
        "stale",
        "stale_hits",
    )

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.stale = 0
        self.sets = 0
        self.lock_waits = 0
        self.early_refreshes = 0
        self.invalidations: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.bypasses: collections.Counter[str] = collections.Counter()
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        # The sampled shadow reads (``verify_rate``): hits recomputed in the background.
        self.shadow_checks = 0
        self.stale_hits = 0
        self.shadow_errors = 0
        self.shadow_skipped = 0

    def observe(self, seconds: float) -> None:
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1


@dataclasses.dataclass(frozen=True, slots=True)
class PrefixStats:
    """A snapshot of one prefix's counters. ``hit_ratio`` is hits / (hits + misses + stale)."""

    prefix: str
    hits: int
    misses: int
    stale: int
    sets: int
    invalidations: Mapping[str, int]
    errors: int
    errors_by_kind: Mapping[str, int]
    bypasses: int
    bypasses_by_reason: Mapping[str, int]
    lock_waits: int
    early_refreshes: int
    latency_count: int
    latency_sum: float
    latency_buckets: tuple[int, ...]
    #: Hits recomputed in the background and compared (``verify_rate``).
    shadow_checks: int = 0
    #: Of those, the ones whose fresh value differed while the entry was not invalidated.
    stale_hits: int = 0
    shadow_errors: int = 0
    shadow_skipped: int = 0
    # The near cache's (zero when it is off): hits served in-process (also in ``hits``),
    # background revalidations, entries dropped on another process's push, and the
    # invalidations' commit-wait (seconds; buckets as ``NEAR_WAIT_BUCKETS``, the last +Inf).
    near_hits: int = 0
    near_revalidations: int = 0
    near_push_drops: int = 0
    near_wait_count: int = 0
    near_wait_sum: float = 0.0
    near_wait_buckets: tuple[int, ...] = ()

    @property
    def lookups(self) -> int:
        return self.hits + self.misses + self.stale

    @property
    def hit_ratio(self) -> float:
        lookups = self.lookups
        return self.hits / lookups if lookups else 0.0

    @property
    def stale_hit_rate(self) -> float | None:
        """Measured share of stale hits among the shadow checks; None before any check."""
        return self.stale_hits / self.shadow_checks if self.shadow_checks else None

    @property
    def mean_latency(self) -> float:
        return self.latency_sum / self.latency_count if self.latency_count else 0.0

    def as_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["invalidations"] = dict(self.invalidations)
        data["errors_by_kind"] = dict(self.errors_by_kind)
        data["bypasses_by_reason"] = dict(self.bypasses_by_reason)
        data["latency_buckets"] = list(self.latency_buckets)
        data["hit_ratio"] = self.hit_ratio
        data["stale_hit_rate"] = self.stale_hit_rate
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidationEvent:
    at: float
    pattern: str
    kind: str
    applied: bool  # False: kept for replay because the backend could not be reached


class Metrics:
    """All counters of one cache, keyed by key prefix (as written, templates unfilled)."""

    def __init__(self, recent: int = 50, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock  # stamps recent invalidations (epoch seconds)
        self._by_prefix: dict[str, Counters] = {}
        self._lock = threading.Lock()
        self._recent: collections.deque[InvalidationEvent] = collections.deque(maxlen=recent)

    def for_prefix(self, prefix: str) -> Counters:
        counters = self._by_prefix.get(prefix)
        if counters is None:
            with self._lock:
                counters = self._by_prefix.setdefault(prefix, Counters())
        return counters

    def record_invalidation(
        self, prefixes: list[str], pattern: str, kind: str, applied: bool
    ) -> None:
        if applied:
            for prefix in prefixes:
                self.for_prefix(prefix).invalidations[kind] += 1
        self._recent.appendleft(InvalidationEvent(self._wall_clock(), pattern, kind, applied))

    def recent_invalidations(self) -> list[InvalidationEvent]:
        return list(self._recent)

    def snapshot(self) -> Mapping[str, PrefixStats]:
        with self._lock:
            items = list(self._by_prefix.items())
        return MappingProxyType({prefix: _freeze(prefix, c) for prefix, c in sorted(items)})

    def reset(self) -> None:
        """Zero every counter (the objects stay: callers may hold them)."""
        with self._lock:
            for counters in self._by_prefix.values():
                counters.__init__()  # type: ignore[misc]
            self._recent.clear()


def _freeze(prefix: str, c: Counters) -> PrefixStats:
    return PrefixStats(
        prefix=prefix,
        hits=c.hits,
        misses=c.misses,
        stale=c.stale,
        sets=c.sets,
        invalidations=MappingProxyType(dict(c.invalidations)),
        errors=sum(c.errors.values()),
        errors_by_kind=MappingProxyType(dict(c.errors)),
        bypasses=sum(c.bypasses.values()),
        bypasses_by_reason=MappingProxyType(dict(c.bypasses)),
        lock_waits=c.lock_waits,
        early_refreshes=c.early_refreshes,
        latency_count=c.latency_count,
        latency_sum=c.latency_sum,
        latency_buckets=tuple(c.latency_buckets),
        shadow_checks=c.shadow_checks,
        stale_hits=c.stale_hits,
        shadow_errors=c.shadow_errors,
        shadow_skipped=c.shadow_skipped,
    )
