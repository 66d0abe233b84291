"""Counting a cache's connections on the server itself: ``CLIENT LIST`` and ``INFO stats``.

(Kept beside the reliability tests; a shared helper may also exist in tests/support on another
branch.) Every probe is one fresh connection, which ``CLIENT LIST`` shows as the client running
``client|list``: it is left out of the count.
"""

from __future__ import annotations

import threading
import time

from support.servers import RedisServer


def cache_connections(server: RedisServer) -> int:
    """Clients connected now, other than this probe."""
    listing = str(server.command("CLIENT", "LIST") or "")
    return sum(1 for line in listing.splitlines() if line and "cmd=client|list" not in line)


def rejected_connections(server: RedisServer) -> int:
    """Connections the server refused because ``maxclients`` was reached (INFO stats)."""
    stats = str(server.command("INFO", "stats") or "")
    for line in stats.splitlines():
        if line.startswith("rejected_connections:"):
            return int(line.split(":", 1)[1])
    raise AssertionError("INFO stats has no rejected_connections")


def wait_for_connections(server: RedisServer, at_most: int, deadline: float = 30.0) -> int:
    """Poll until at most ``at_most`` clients remain (the server sees a close a moment after
    the client makes it); returns the last count, for the test to assert on. The deadline
    only bounds a failure."""
    end = time.monotonic() + deadline
    count = cache_connections(server)
    while count > at_most and time.monotonic() < end:
        time.sleep(0.05)
        count = cache_connections(server)
    return count


class PeakSampler:
    """Samples ``CLIENT LIST`` in a thread while a load runs; ``peak`` is the most seen.
    A sample can miss a peak, never invent one: the hard check is ``rejected_connections``
    under ``maxclients``; this one names the number when it fails."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, cache_connections(self.server))
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
