"""How an invalidation is carried out: the strategy, the plan of each pattern (a generation
bump, a tombstone at one entry, or a SCAN), and its bookkeeping (stats, kept when it fails)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

from freshcache._engine.health import Health
from freshcache._engine.keyspace import KeySpace
from freshcache._engine.ledger import Ledger
from freshcache.keys import encode_surrogates
from freshcache.tokens import PatternKind, PatternPlan, classify

#: (pattern relative to the namespace, explicit stats label or None)
Prepared = tuple[str, str | None]


class Strategy(enum.Enum):
    GENERATION = "generation"
    SCAN = "scan"  # the naive design (GET/SET, SCAN + UNLINK), kept for comparison


class Invalidations:
    """What the invalidation procedures need, and nothing else: the key space, the strategy,
    the health state (breaker, kept invalidations) and the ledger."""

    __slots__ = ("health", "keys", "ledger", "strategy", "wake")

    def __init__(self, keys: KeySpace, strategy: Strategy, health: Health, ledger: Ledger) -> None:
        self.keys = keys
        self.strategy = strategy
        self.health = health
        self.ledger = ledger
        #: Called when something is kept: the engine points it at its background replayer.
        self.wake: Callable[[], None] = _nothing

    @staticmethod
    def prepare(patterns: Iterable[str], label: str | None) -> list[Prepared]:
        out = []
        for written in patterns:
            # A lone surrogate cannot be sent to Redis: encode it as keys.escape() does.
            pattern = encode_surrogates(written) if isinstance(written, str) else written
            classify(pattern)  # bad input fails here, at the caller, naming the problem
            out.append((pattern, label))
        return out

    def plan(self, pattern: str) -> PatternPlan:
        plan = classify(pattern)
        if self.strategy is Strategy.SCAN and plan.kind is PatternKind.GENERATION:
            return PatternPlan(pattern, PatternKind.SCAN, ())
        return plan

    def record(
        self, pattern: str, label: str | None, applied: bool, kind: str | None = None
    ) -> None:
        kind = kind or self.plan(pattern).kind.value
        self.ledger.record_invalidation(pattern, label, kind, applied)

    def kept(self, pattern: str, label: str | None) -> None:
        """``pattern`` could not be applied: keep it for replay, and count it."""
        self.health.pending.add(pattern)
        self.record(pattern, label, applied=False)
        self.wake()


def _nothing() -> None:
    return None
