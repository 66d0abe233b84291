"""Failure handling that knows nothing of any backend: a circuit breaker and the invalidations
that could not be applied, kept until they can be replayed.

The consistency promise survives an outage only if no invalidation is lost: one that fails is
kept (deduplicated, in order); while any are kept, this process does not read from the cache,
and they are replayed, in order, before it does again. If more pile up than the bound allows,
they collapse into one invalidation of the whole namespace: coarser, never wrong.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after a cool-down lets one probe
    through (half-open), closing on its success and re-opening on its failure.

    The cool-down starts short (``cooldown_min``) and doubles each time a probe fails, up to
    ``cooldown``: a stall of a fraction of a second costs a fraction of a second of uncached
    reads, while a backend that stays down is probed ever more rarely. A success resets it."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        cooldown_min: float = 0.1,
    ) -> None:
        if threshold < 1:
            raise ValueError("freshcache: breaker_threshold must be at least 1")
        for name, value in (("breaker_cooldown", cooldown), ("breaker_cooldown_min", cooldown_min)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"freshcache: {name} must be a number of seconds, not negative")
        self.threshold = threshold
        self.cooldown = cooldown  # the longest cool-down
        self.cooldown_min = min(cooldown_min, cooldown)
        #: The cool-down of the current (or next) opening.
        self.current_cooldown = self.cooldown_min
        self._clock = clock
        self._failures = 0
        self.state = BreakerState.CLOSED  # read on every call: a plain attribute, no property
        self._opened_at = 0.0
        self._probe_started = 0.0
        self._lock = threading.Lock()
        self.opened_count = 0
        #: Calls let through to find out whether the backend is back (half-open).
        self.probes = 0

    def allow(self) -> bool:
        """May a call go to the backend now? Costs no I/O; the hot path calls it every time."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self._clock()
        with self._lock:
            cooldown = self.current_cooldown
            if self.state is BreakerState.OPEN and now - self._opened_at >= cooldown:
                self.state = BreakerState.HALF_OPEN
                self._probe_started = now
                self.probes += 1
                return True  # this caller is the probe
            if self.state is BreakerState.HALF_OPEN and now - self._probe_started >= max(
                cooldown, 1.0
            ):
                self._probe_started = now  # the probe never reported back: let another try
                self.probes += 1
                return True
            return False

    def record_success(self) -> None:
        if self.state is BreakerState.CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self.state = BreakerState.CLOSED
            self.current_cooldown = self.cooldown_min

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self.state is BreakerState.HALF_OPEN:
                # The probe failed: the backend is still down, wait twice as long this time.
                self.current_cooldown = min(max(self.current_cooldown * 2, 1e-3), self.cooldown)
            elif self.state is BreakerState.CLOSED and self._failures >= self.threshold:
                self.current_cooldown = self.cooldown_min
            else:
                return
            self.opened_count += 1
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()


class PendingInvalidations:
    """Invalidations not yet applied, in order, deduplicated, bounded."""

    #: The pattern that replaces everything when the bound is exceeded.
    EVERYTHING = "*"

    def __init__(self, limit: int = 1000) -> None:
        if limit < 1:
            raise ValueError("freshcache: the pending invalidation limit must be at least 1")
        self.limit = limit
        # pattern -> sequence number of its latest failure; insertion order is issue order.
        self._patterns: dict[str, int] = {}
        self._sequence = 0
        self._lock = threading.Lock()
        self.collapsed = 0

    def __len__(self) -> int:
        return len(self._patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def add(self, pattern: str) -> None:
        with self._lock:
            self._sequence += 1
            if self.EVERYTHING in self._patterns:
                self._patterns[self.EVERYTHING] = self._sequence  # replay it again, later
                return
            self._patterns.pop(pattern, None)  # re-adding moves it to the end: order of issue
            self._patterns[pattern] = self._sequence
            if len(self._patterns) > self.limit:
                self._patterns = {self.EVERYTHING: self._sequence}
                self.collapsed += 1

    def snapshot(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._patterns.items())

    def discard_applied(self, applied: list[tuple[str, int]]) -> None:
        """Forget replayed patterns, unless one failed again after its snapshot was taken:
        that newer failure belongs to a newer write and must be replayed too."""
        with self._lock:
            for pattern, sequence in applied:
                if self._patterns.get(pattern) == sequence:
                    del self._patterns[pattern]
