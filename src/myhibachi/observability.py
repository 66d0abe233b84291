"""Per-request cache outcome (hit/miss per key prefix) for the structured request log.

The request middleware opens a :func:`collect` scope; the service notes each cached read
(:func:`note_read`) and, inside the cached function's body, each miss (:func:`note_miss`):
a read whose body did not run was served from the cache. The record is a mutable object
in a context variable, so a miss computed in a task that freshcache starts for the call
(single-flight) still lands in the request that asked.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CacheOutcomes:
    reads: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)

    def by_prefix(self) -> dict[str, dict[str, int]]:
        return {
            prefix: {
                "hit": max(reads - self.misses[prefix], 0),
                "miss": min(self.misses[prefix], reads),
            }
            for prefix, reads in sorted(self.reads.items())
        }

    def outcome(self) -> str:
        """``hit``, ``miss``, ``mixed``, or ``none`` when the request made no cached read."""
        reads = sum(self.reads.values())
        misses = min(sum(self.misses.values()), reads)
        if reads == 0:
            return "none"
        if misses == 0:
            return "hit"
        return "miss" if misses == reads else "mixed"


_current: ContextVar[CacheOutcomes | None] = ContextVar("myhibachi_cache_outcomes", default=None)


@contextmanager
def collect() -> Iterator[CacheOutcomes]:
    outcomes = CacheOutcomes()
    token = _current.set(outcomes)
    try:
        yield outcomes
    finally:
        _current.reset(token)


def note_read(prefix: str) -> None:
    if (outcomes := _current.get()) is not None:
        outcomes.reads[prefix] += 1


def note_miss(prefix: str) -> None:
    if (outcomes := _current.get()) is not None:
        outcomes.misses[prefix] += 1


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str = "INFO") -> None:
    """Send the service's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("myhibachi", "uvicorn", "uvicorn.error", "freshcache"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
