"""Which stats record a read or an invalidation is counted under.

Reads count under the key prefix as written in the decorator (``booking:availability:{day}``);
an invalidation counts under every read prefix it reaches (``booking:availability:2025-10-11:*``
counts for ``booking:availability:{day}``), else under the pattern itself, so ``stats()`` stays
keyed by read prefixes, not by values.
"""

from __future__ import annotations

from freshcache._engine.spec import FunctionSpec
from freshcache.keys import SEGMENT_SEPARATOR, WILDCARD
from freshcache.metrics import Counters, Metrics
from freshcache.tokens import PatternKind, classify


class Ledger:
    __slots__ = ("_counters", "_read_prefixes", "metrics")

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._counters: dict[str, Counters] = {}
        # read prefix -> its segments, None where a template fills the segment
        self._read_prefixes: dict[str, tuple[str | None, ...]] = {}

    def counters(self, spec: FunctionSpec) -> Counters:
        counters = self._counters.get(spec.prefix_label)
        if counters is None:
            label = spec.prefix_label
            counters = self._counters[label] = self.metrics.for_prefix(label)
            # Remember the read prefix, so invalidations are counted under the reads they reach.
            self._read_prefixes[label] = tuple(
                None if "{" in segment else segment for segment in label.split(SEGMENT_SEPARATOR)
            )
        return counters

    def labels(self, pattern: str, label: str | None) -> list[str]:
        """The stats prefixes an invalidation of ``pattern`` is counted under."""
        if label is not None:
            return [label]
        plan = classify(pattern)
        if plan.kind is not PatternKind.SCAN:
            reached = [
                prefix
                for prefix, template in self._read_prefixes.items()
                if all(t is None or t == s for t, s in zip(template, plan.segments, strict=False))
            ]
            if reached:
                return reached
        suffix = SEGMENT_SEPARATOR + WILDCARD
        return [pattern[: -len(suffix)] if pattern.endswith(suffix) else pattern]

    def record_pattern_error(self, fallback: str) -> None:
        """A pattern of a write could not be built; ``fallback`` (broader) was used instead."""
        for label in self.labels(fallback, None):
            self.metrics.for_prefix(label).errors["pattern"] += 1

    def record_invalidation(
        self, pattern: str, label: str | None, kind: str, applied: bool
    ) -> None:
        self.metrics.record_invalidation(self.labels(pattern, label), pattern, kind, applied)
