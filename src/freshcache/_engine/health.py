"""Whether this process may use the backend now: the circuit breaker, the invalidations kept
while it could not be reached, and the last error (for ``health()`` and the logs).

This is the state a near cache or a background replayer shares with the read and invalidation
paths; it holds no connection and does no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from freshcache.backends.base import BackendError
from freshcache.metrics import Counters
from freshcache.resilience import BreakerState, CircuitBreaker, PendingInvalidations

log = logging.getLogger("freshcache")

#: At most one warning per this many seconds: an outage must not flood the logs.
LOG_INTERVAL = 10.0


class Health:
    __slots__ = (
        "_last_logged",
        "_replaying",
        "_suppressed_logs",
        "breaker",
        "clock",
        "kind",
        "last_error",
        "pending",
    )

    def __init__(
        self,
        kind: str,
        breaker: CircuitBreaker,
        pending: PendingInvalidations,
        clock: Callable[[], float],
    ) -> None:
        self.kind = kind
        self.breaker = breaker
        self.pending = pending
        self.clock = clock
        self.last_error: str | None = None
        self._replaying = False
        self._last_logged = float("-inf")
        self._suppressed_logs = 0

    @property
    def usable(self) -> bool:
        """Nothing kept and the breaker closed: the read path may go straight to the backend."""
        return not self.pending and self.breaker.state is BreakerState.CLOSED

    @property
    def reachable(self) -> bool:
        return self.breaker.state is BreakerState.CLOSED and self.last_error is None

    def failed(self, exc: BackendError, counters: Counters | None = None) -> None:
        self.breaker.record_failure()
        self.last_error = str(exc)
        if counters is not None:
            counters.errors[exc.kind] += 1
        now = self.clock()
        if now - self._last_logged >= LOG_INTERVAL:
            log.warning(
                "freshcache: backend %s failed (%s); running uncached%s",
                self.kind,
                exc,
                f" ({self._suppressed_logs} similar messages suppressed)"
                if self._suppressed_logs
                else "",
            )
            self._last_logged, self._suppressed_logs = now, 0
        else:
            self._suppressed_logs += 1

    def succeeded(self) -> None:
        if self.last_error is not None:
            self.last_error = None
        self.breaker.record_success()

    def bypass_reason(self) -> str:
        return "pending_invalidations" if self.pending else "breaker_open"

    def begin_replay(self) -> bool:
        """Claim the replay of the kept invalidations; False if another caller is at it."""
        if self._replaying:
            return False
        self._replaying = True
        return True

    def end_replay(self) -> None:
        self._replaying = False
