"""The background replay of kept invalidations: a thread that retries, with backoff, until
every kept invalidation is applied, so that other processes stop reading what they
invalidate without waiting for this process's next call.

It runs only while something is kept, through the synchronous driver (a thread needs no event
loop, and works the same under asyncio, threads or both). The replay itself is
``flows.recover``: the same procedure, in the same order, under the same claim
(``Health.begin_replay``), as the replay a read or an invalidation does inline, but without
waiting for the breaker's cool-down: its own backoff bounds the attempts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from freshcache._engine.health import Health

log = logging.getLogger("freshcache")

#: First pause between attempts, doubled after each failure up to the last.
FIRST_DELAY, MAX_DELAY = 0.05, 2.0


class Replayer:
    """Starts a daemon thread when something is kept; the thread ends when nothing is."""

    __slots__ = ("_health", "_lock", "_replay", "_stopped", "_thread", "_wake")

    def __init__(self, health: Health, replay: Callable[[], bool]) -> None:
        self._health = health
        self._replay = replay
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wake(self) -> None:
        """Something was kept: make sure a thread is at it."""
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="freshcache-replay", daemon=True
                )
                self._thread.start()
            else:
                self._wake.set()

    def stop(self, timeout: float) -> None:
        """No more attempts from the thread (``close`` flushes by itself, then reports)."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        delay = FIRST_DELAY
        while True:
            with self._lock:
                if self._stopped or not self._health.pending:
                    self._thread = None  # a later wake() starts a new one
                    self._wake.clear()
                    return
            try:
                done = self._replay()
            except Exception:  # never let the thread die with invalidations kept
                log.exception("freshcache: background replay failed")
                done = False
            if done:
                delay = FIRST_DELAY
                continue
            self._wake.wait(delay)
            self._wake.clear()
            delay = min(delay * 2, MAX_DELAY)
