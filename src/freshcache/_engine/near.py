"""The near cache (L1): entries of a remote backend kept in this process for a short lease.

An entry is the stored payload (bytes, decoded again on every hit, so no caller ever sees
another caller's mutations) with a lease deadline ``t0 + lease``, where ``t0`` is the
monotonic time taken *before* the read that validated the entry was sent. Within its lease an
entry is served without a round trip; past it, only on an extension (``extend``: a heartbeat
that came back on the push subscription within the last lease, so never when the backend is
down), and never past ``t0 + max_age``.

Writers keep the promise across processes by waiting the leases out (commit-wait): an
invalidation returns only after ``lease`` has passed since the backend acknowledged it, so every
entry validated before the write has expired everywhere by then. The invalidating process also
drops its own matching entries at once, and other processes drop theirs on a best-effort push;
with plain leases neither is needed for correctness (with extended leases the writer's
published message is part of the protocol: see ``near_io``).

The table is bounded by entries and by bytes (LRU). Pure bookkeeping: no I/O here; the engine
does the reads and the waits.
"""

from __future__ import annotations

import bisect
import collections
import datetime
import decimal
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from freshcache import entry as envelope
from freshcache.metrics import NEAR_WAIT_BUCKETS
from freshcache.tokens import PatternKind, classify

#: The revalidation margin before a hot entry's deadline, in measured round trips, and its
#: floor in seconds (a clock tick, a scheduling delay).
AHEAD_ROUND_TRIPS = 4
MIN_AHEAD = 0.002
#: Per-entry bookkeeping bytes counted against ``max_bytes`` besides the key and the payload.
ENTRY_OVERHEAD = 120
WAIT_BUCKETS = NEAR_WAIT_BUCKETS
_TOKEN_END = envelope.TOKEN_END
_HEADER_END = envelope.HEADER_END


#: Decoded values no caller can change: kept decoded in their entry and served as they are
#: (every other value is decoded again on each hit, so callers never share a mutable one).
IMMUTABLE_TYPES = frozenset(
    {int, float, str, bytes, bool, type(None), datetime.date, datetime.datetime, decimal.Decimal}
    | {datetime.time, datetime.timedelta, uuid.UUID}
)
_UNDECODED = object()


class NearEntry:
    __slots__ = (
        "deadline",
        "hits",
        "max_until",
        "payload",
        "refresh_at",
        "size",
        "tracked",
        "value",
    )

    def __init__(
        self,
        payload: bytes,
        deadline: float,
        refresh_at: float,
        size: int,
        tracked: int = -1,
        max_until: float = 0.0,
    ) -> None:
        #: Hits since the entry was validated: only a key hit more than once in a lease is
        #: revalidated ahead (for a key read about once a lease, a revalidation costs the
        #: round trip it would save).
        self.hits = 0
        self.value: object = _UNDECODED
        self.payload = payload
        self.deadline = deadline
        self.refresh_at = refresh_at
        self.size = size
        #: The subscription (``NearCache.push_epoch``) that has carried every invalidation
        #: since the entry was validated, or -1; only such an entry is extended.
        self.tracked = tracked
        #: The entry is never served past this, extended or not (``t0 + max_age``).
        self.max_until = max_until

    def hit_due(self, now: float) -> bool:
        """Count a hit at ``now``; True when it should start the entry's revalidation ahead
        of the deadline (past ``refresh_at``, and hit before since it was validated)."""
        self.hits += 1
        return now >= self.refresh_at and self.hits > 1


def decoded(entry: NearEntry, decode: Callable[[bytes], Any]) -> Any:
    """The value of a near hit: decoded from the stored bytes, or, for an immutable value,
    the one decoded at its first hit."""
    value = entry.value
    if value is _UNDECODED:
        value = decode(entry.payload)
        if type(value) in IMMUTABLE_TYPES:
            entry.value = value
    return value


class NearStats:
    """The near cache's counters of one key prefix."""

    __slots__ = ("hits", "push_drops", "revalidations", "wait_buckets", "wait_count", "wait_sum")

    def __init__(self) -> None:
        self.hits = 0
        self.revalidations = 0
        self.push_drops = 0
        self.wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0
        self.wait_count = 0

    def observe_wait(self, seconds: float) -> None:
        self.wait_buckets[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
        self.wait_sum += seconds
        self.wait_count += 1


class NearCache:
    """One cache's near table. ``clock`` is monotonic seconds of this process (the leases and
    the writers' waits are durations measured here; no clock is compared across processes)."""

    def __init__(
        self,
        lease: float,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = 0.0,
    ) -> None:
        if not lease > 0:
            raise ValueError("freshcache: near_lease must be positive seconds (0 turns it off)")
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age < 0:
            raise ValueError("freshcache: near_max_age must be a number of seconds >= 0 (0: off)")
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("freshcache: near_max_entries and near_max_bytes must be positive")
        self.lease = float(lease)
        # Hot keys are revalidated in the background this long before their deadline: a few
        # round trips ahead (measured), so that no hot read waits for the network, and no more,
        # so that a hot key costs about one revalidation per lease. Half the lease until the
        # first round trip is measured, and at most that.
        self.ahead = self.lease / 2
        self._round_trip: float | None = None
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self.evictions = 0
        self._table: collections.OrderedDict[str, NearEntry] = collections.OrderedDict()
        self._lock = threading.Lock()
        #: Keys whose background revalidation is under way (one per key).
        self.refreshing: set[str] = set()
        self._stats: dict[str, NearStats] = {}
        # Bumped by every drop: a read that started before a drop does not put its (possibly
        # older) entry back after it.
        self.epoch = 0
        # Extended leases (see ``extend``): how long an entry may live at most, the current
        # subscription (bumped whenever it starts or ends), whether it is live, and the
        # deadline the last heartbeat it carried proved.
        self.max_age = float(max_age) if max_age > lease else 0.0
        self.push_epoch = 0
        self.tracking = False
        self.extended_until = 0.0
        #: The newest entry's ``max_until``: past it no entry can be extended any more.
        self.extensible_until = 0.0

    def observe_round_trip(self, seconds: float) -> None:
        """A read of the backend took ``seconds``: move the revalidation margin with it (a
        moving average, so one slow read widens it and it narrows again slowly)."""
        average = self._round_trip
        average = seconds if average is None else 0.8 * average + 0.2 * seconds
        self._round_trip = average
        self.ahead = min(self.lease / 2, max(MIN_AHEAD, AHEAD_ROUND_TRIPS * average))

    def __len__(self) -> int:
        return len(self._table)

    def stats(self, label: str) -> NearStats:
        stats = self._stats.get(label)
        if stats is None:
            stats = self._stats.setdefault(label, NearStats())
        return stats

    def snapshot(self) -> dict[str, NearStats]:
        return dict(self._stats)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, key: str, now: float) -> NearEntry | None:
        """The entry of ``key`` if its lease has not run out at ``now``."""
        entry = self._table.get(key)
        if entry is None:
            return None
        if now >= entry.deadline and not (
            entry.tracked == self.push_epoch and now < self.extended_until and now < entry.max_until
        ):
            with self._lock:
                if self._table.get(key) is entry:
                    self._remove(key)
            return None
        return entry

    def put(self, key: str, payload: bytes, t0: float, epoch: int) -> None:
        """Keep ``payload`` for a lease from ``t0`` (taken before its validating read was
        sent), unless a drop happened since that read began (``epoch`` is the one it saw)."""
        deadline = t0 + self.lease
        size = len(key) + len(payload) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            if epoch != self.epoch:
                return
            self._remove(key)
            if self.tracking:
                # No drop since t0, so no change of subscription either (each is a drop):
                # the subscription was live before the read was sent, and carries every
                # invalidation the read did not see.
                tracked, max_until = self.push_epoch, t0 + self.max_age
                refresh_at = max_until - self.ahead
                self.extensible_until = max(self.extensible_until, max_until)
            else:
                tracked, max_until, refresh_at = -1, deadline, deadline - self.ahead
            self._table[key] = NearEntry(
                payload, deadline, refresh_at, size, tracked=tracked, max_until=max_until
            )
            self.bytes += size
            while len(self._table) > self.max_entries or self.bytes > self.max_bytes:
                self._remove(next(iter(self._table)))
                self.evictions += 1

    def _remove(self, key: str) -> None:
        entry = self._table.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size

    # -- drops ---------------------------------------------------------------------------------

    def drop_pattern(self, absolute: str) -> int:
        """Drop the entries an invalidation of ``absolute`` (a stored key or glob) reaches;
        returns how many. A glob that is not a prefix drops everything (always safe)."""
        plan = classify(absolute)
        with self._lock:
            self.epoch += 1
            if plan.kind is PatternKind.ENTRY:
                matched = [absolute] if absolute in self._table else []
            elif plan.kind is PatternKind.GENERATION:
                prefix = absolute[:-1]  # "ns:a:b:*" reaches every key under "ns:a:b:"
                matched = [k for k in self._table if k.startswith(prefix)]
            else:
                matched = list(self._table)
            for key in matched:
                self._remove(key)
        return len(matched)

    def clear(self) -> None:
        with self._lock:
            self.epoch += 1
            self._table.clear()
            self.bytes = 0

    # -- extended leases -----------------------------------------------------------------------

    def subscription(self, live: bool) -> int:
        """The push subscription started (``live``) or ended. Either way every entry kept so
        far loses its extension (a message may have been missed in between), and a read in
        flight is not kept (the drop epoch moves)."""
        with self._lock:
            self.epoch += 1
            self.push_epoch += 1
            self.tracking = live and self.max_age > 0
            self.extended_until = 0.0
            return self.push_epoch

    def wants_heartbeats(self) -> bool:
        """Whether an entry could still be extended (a process whose table holds none, or only
        entries past their ``max_until``, sends no heartbeat)."""
        return self.clock() < self.extensible_until

    def extend(self, sent_at: float, push_epoch: int) -> None:
        """This process's own heartbeat, sent at ``sent_at`` (taken before it was sent), was
        answered on the subscription ``push_epoch``.

        Redis answers the heartbeat (a PING on the subscribed connection) after every message
        it queued there before executing it. Every writer publishes after its write and waits a
        lease after its publish was answered; so every invalidation whose wait could end
        before ``sent_at + lease`` was published before the heartbeat was executed, and has
        been received (and its entries dropped) already. An entry tracked
        by this subscription is then as valid as one validated at ``sent_at``: it may be served
        until ``sent_at + lease``, never past its ``max_until``."""
        with self._lock:
            if push_epoch == self.push_epoch and self.tracking:
                self.extended_until = max(self.extended_until, sent_at + self.lease)


def payload_of(values: list[bytes | None]) -> bytes | None:
    """The payload of a fetched entry if it carries the stamp of the tokens fetched with it
    (the check ``EntryRules.judge`` makes on a hit), else None."""
    raw = values[0]
    if raw is None:
        return None
    try:
        stamp = _TOKEN_END.join(values[1:]) + _TOKEN_END  # type: ignore[arg-type]
    except TypeError:  # a token is missing
        return None
    if not raw.startswith(stamp):
        return None
    end = raw.find(_HEADER_END, len(stamp))
    return raw[end + 1 :] if end >= 0 else None


NEAR_URL_OPTIONS = ("near_lease", "near_max_entries", "near_max_bytes", "near_max_age")
_SECONDS_OPTIONS = ("near_lease", "near_max_age")


def split_url_options(url: str) -> tuple[str, dict[str, float | int]]:
    """``url`` without its ``near_*`` query parameters, and those parameters, checked."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url, {}
    kept: list[tuple[str, str]] = []
    found: dict[str, float | int] = {}
    for name, text in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name not in NEAR_URL_OPTIONS:
            kept.append((name, text))
            continue
        try:
            found[name] = float(text) if name in _SECONDS_OPTIONS else int(text)
        except ValueError:
            kind = "a number of seconds" if name in _SECONDS_OPTIONS else "an integer"
            raise ValueError(f"freshcache: URL option {name}={text[:40]!r} is not {kind}") from None
    if not found:
        return url, {}
    query = urllib.parse.urlencode(kept)
    rest = (parts.scheme, parts.netloc, parts.path, query, parts.fragment)
    return urllib.parse.urlunsplit(rest), found
