"""What an entry is worth: its TTLs, how it is encoded into the stored envelope, how a fetch is
judged (hit, miss, stale, corrupt), and when a valid entry is refreshed early. Pure apart from
the clocks it is given; no backend, no I/O."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from freshcache import entry as envelope
from freshcache._engine.keyspace import Located
from freshcache._engine.spec import FunctionSpec
from freshcache.codecs import DecodeError, EncodeError, ValueTooLarge, encode_checked
from freshcache.metrics import Counters
from freshcache.stampede import should_refresh_early
from freshcache.tokens import new_token

log = logging.getLogger("freshcache")

#: A miss; never None, which is a value like any other.
NO_VALUE: Any = object()
#: Token keys are created with (and bumped to) at least a day to live.
MIN_TOKEN_TTL_MS = 24 * 3600 * 1000
#: A tombstone must outlive any reader still computing from before it.
MIN_TOMBSTONE_TTL_MS = 600 * 1000

_TOKEN_END = envelope.TOKEN_END
_HEADER_END = envelope.HEADER_END


class EntryRules:
    """The entry policy of one cache. ``wall_clock`` (seconds since the epoch) stamps expiry
    times, which other processes read; ``rand`` drives early refresh (tests pin it)."""

    __slots__ = ("default_ttl_ms", "max_value_bytes", "rand", "verify_encoding", "wall_clock")

    def __init__(
        self,
        *,
        default_ttl_ms: int,
        max_value_bytes: int,
        verify_encoding: bool,
        wall_clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self.default_ttl_ms = default_ttl_ms
        self.max_value_bytes = max_value_bytes
        self.verify_encoding = verify_encoding
        self.wall_clock = wall_clock
        self.rand = rand

    def ttl_ms(self, spec: FunctionSpec) -> int:
        return spec.ttl_ms if spec.ttl_ms is not None else self.default_ttl_ms

    @staticmethod
    def token_ttl_ms(ttl_ms: int) -> int:
        # A token must outlive every entry that references it.
        return max(MIN_TOKEN_TTL_MS, 2 * ttl_ms)

    def judge(
        self, spec: FunctionSpec, values: list[bytes | None], counters: Counters
    ) -> tuple[Any, bytes | None]:
        """Classify a fetch: ``(value or NO_VALUE, stamp or None if tokens are missing)``."""
        try:
            stamp = _TOKEN_END.join(values[1:]) + _TOKEN_END  # type: ignore[arg-type]
        except TypeError:  # a token is missing: nothing stored before can be valid
            counters.misses += 1
            return NO_VALUE, None
        raw = values[0]
        if raw is not None and raw.startswith(stamp):  # the hit, tested first
            end = raw.find(_HEADER_END, len(stamp))
            if end >= 0:
                try:
                    return spec.codec.decode(raw[end + 1 :]), stamp
                except DecodeError:
                    pass
            counters.errors["decode"] += 1
            counters.misses += 1
        elif raw is None or raw.startswith(envelope.TOMBSTONE_MARK):
            counters.misses += 1
        else:
            counters.stale += 1  # computed under tokens that have since been replaced
        return NO_VALUE, stamp

    def decode_valid(self, spec: FunctionSpec, raw: bytes, stamp: bytes, counters: Counters) -> Any:
        """The value of an entry known to carry the current stamp, or ``NO_VALUE`` if corrupt."""
        end = raw.find(_HEADER_END, len(stamp))
        if end >= 0:
            try:
                return spec.codec.decode(raw[end + 1 :])
            except DecodeError:
                pass
        counters.errors["decode"] += 1
        return NO_VALUE

    def encode_entry(
        self, spec: FunctionSpec, value: Any, stamp: bytes, elapsed: float, counters: Counters
    ) -> bytes | None:
        """The envelope to store, or None when the value is not cached (counted why)."""
        try:
            # Size first, then the type-strict round trip: an oversize value is encoded once.
            payload = encode_checked(
                spec.codec, value, max_bytes=self.max_value_bytes, verify=self.verify_encoding
            )
        except ValueTooLarge:
            counters.errors["oversize"] += 1
            return None
        except EncodeError as exc:
            counters.errors["encode"] += 1
            log.debug("freshcache: %s returned a value that is not cached: %s", spec.qualname, exc)
            return None
        expiry_ms = int(self.wall_clock() * 1000) + self.ttl_ms(spec)
        return envelope.pack(stamp, int(elapsed * 1000), expiry_ms, payload)

    def refresh_due(self, spec: FunctionSpec, raw: bytes | None, stamp: bytes | None) -> bool:
        """Should this caller recompute a valid entry early (XFetch)?"""
        if raw is None or stamp is None:
            return False
        try:
            delta_ms, expiry_ms, _ = envelope.timing_of(raw, len(stamp))
        except ValueError:
            return False
        now_ms = self.wall_clock() * 1000
        return should_refresh_early(now_ms, expiry_ms, delta_ms, spec.early_refresh_beta, self.rand)

    @staticmethod
    def missing_tokens(loc: Located, values: list[bytes | None]) -> tuple[list[str], list[bytes]]:
        """The token keys a fetch found absent, and a fresh token for each."""
        missing = [k for k, v in zip(loc.tokens, values[1:], strict=True) if v is None]
        return missing, [new_token() for _ in missing]

    @staticmethod
    def merged_stamp(
        loc: Located, values: list[bytes | None], missing: list[str], created: list[bytes]
    ) -> bytes:
        """The stamp of the tokens read, with the created ones where they were missing."""
        found = dict(zip(missing, created, strict=True))
        tokens = [
            v if v is not None else found[k] for k, v in zip(loc.tokens, values[1:], strict=True)
        ]
        return envelope.make_stamp(tokens)
