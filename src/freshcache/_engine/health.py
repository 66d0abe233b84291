"""Whether this process may use the backend now: the circuit breaker, the invalidations kept
while it could not be reached, and the last error (for ``health()`` and the logs).

This is the state a near cache or a background replayer shares with the read and invalidation
paths; it holds no connection and does no I/O. Besides the breaker and the kept invalidations,
two things keep reads away from the backend: a server whose identity has not been checked since
the cache (re)connected (``unverified``: it may have come back with older data), and, for
``health()``, writes that the server refuses while it still serves reads (``writes_refused``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from freshcache.backends.base import BackendError
from freshcache.metrics import Counters
from freshcache.resilience import BreakerState, CircuitBreaker, PendingInvalidations

log = logging.getLogger("freshcache")

#: At most one warning per this many seconds: an outage must not flood the logs.
LOG_INTERVAL = 10.0

#: What Redis answers when it serves reads but refuses writes.
_REFUSALS = ("OOM", "OutOfMemoryError", "READONLY", "ReadOnlyError", "NOREPLICAS", "MISCONF")


def refuses_writes(exc: BackendError) -> bool:
    """Did the server answer, refusing a write (as opposed to not answering)?"""
    return exc.kind == "server" and any(word in str(exc) for word in _REFUSALS)


class Health:
    __slots__ = (
        "_last_logged",
        "_replay_lock",
        "_suppressed_logs",
        "_verify_lock",
        "breaker",
        "checks_identity",
        "clock",
        "identity_epoch",
        "kind",
        "last_error",
        "new_generations",
        "pending",
        "unverified",
        "writes_refused",
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
        self._replay_lock = threading.Lock()
        self._verify_lock = threading.Lock()
        #: Whether the server's identity is checked on connect (Redis with generations).
        self.checks_identity = False
        #: True until the identity of the server is checked, and again after any failure to
        #: reach it (a reconnect may reach a server restarted from an older snapshot).
        self.unverified = False
        #: Counts the failures that made the server unverified: a check that started before
        #: the latest one must not mark the server verified.
        self.identity_epoch = 0
        #: The server refused the last write it was sent (OOM, READONLY, NOREPLICAS).
        self.writes_refused = False
        #: Fresh namespace generations started because the server's identity changed.
        self.new_generations = 0
        self._last_logged = float("-inf")
        self._suppressed_logs = 0

    @property
    def usable(self) -> bool:
        """Nothing kept, the server checked, the breaker closed: the read path may go straight
        to the backend."""
        return (
            not self.pending and not self.unverified and self.breaker.state is BreakerState.CLOSED
        )

    @property
    def degraded(self) -> bool:
        """Something the promise across processes depends on is not done yet."""
        return bool(self.pending) or self.writes_refused or self.unverified

    @property
    def reachable(self) -> bool:
        return self.breaker.state is BreakerState.CLOSED and self.last_error is None

    def failed(self, exc: BackendError, counters: Counters | None = None) -> None:
        self.breaker.record_failure()
        self.last_error = str(exc)
        if exc.kind != "server" and self.checks_identity:
            self.unverified = True  # the next connection may reach another server
            self.identity_epoch += 1
        elif refuses_writes(exc):
            self.writes_refused = True
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

    def servers_changed(self) -> None:
        """The backend now reaches other servers, with no failure seen (a cluster failover
        learnt from MOVED or a slot map refresh): check their identity before the next read."""
        if self.checks_identity:
            self.unverified = True
            self.identity_epoch += 1

    def succeeded(self) -> None:
        if self.last_error is not None:
            self.last_error = None
        self.breaker.record_success()

    def wrote(self) -> None:
        """A write was accepted: the server takes writes again."""
        if self.writes_refused:
            self.writes_refused = False

    def bypass_reason(self) -> str:
        if self.pending:
            return "pending_invalidations"
        return "server_unverified" if self.unverified else "breaker_open"

    def begin_replay(self) -> bool:
        """Claim the replay of the kept invalidations (and the server check); False if another
        caller (a task, a thread, the background replayer) is at it."""
        return self._replay_lock.acquire(blocking=False)

    def end_replay(self) -> None:
        self._replay_lock.release()

    def begin_verify(self) -> bool:
        """Claim the server check for the whole cache; False if the other face (sync or async)
        is at it. Two checks at once would both see the old identity and both start a fresh
        generation, the later one invalidating what was stored after the first."""
        return self._verify_lock.acquire(blocking=False)

    def end_verify(self) -> None:
        self._verify_lock.release()
