"""The stored envelope of a cache entry, and tombstones (pure bytes handling).

An entry is ``<stamp><nonce>\\x1f<delta_ms>\\x1f<expiry_ms>\\x1e<payload>`` where the stamp is the
generation tokens it was computed under, each followed by ``\\x1f``. Tokens are hex, so the
validity test on the hit path is a single ``startswith`` against the stamp built from the
current tokens. The nonce makes each write unique, so the header identifies one write: a
conditional store compares the header the reader saw (its *lease*) with what is there now.

A tombstone (``~`` + a fresh token) overwrites an entry that was invalidated on its own; it
never equals any stamp, and a reader that saw the old entry can no longer store over it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

TOKEN_END = b"\x1f"
HEADER_END = b"\x1e"
TOMBSTONE_MARK = b"~"
ABSENT_LEASE = b""  # the reader saw no entry
PRESENT_MARK = b"="  # a lease for a present entry: "=" + the header the reader saw


def make_stamp(tokens: Sequence[bytes]) -> bytes:
    return TOKEN_END.join(tokens) + TOKEN_END


def pack(stamp: bytes, delta_ms: int, expiry_ms: int, payload: bytes) -> bytes:
    nonce = os.urandom(6).hex().encode()
    return b"".join(
        (
            stamp,
            nonce,
            TOKEN_END,
            b"%d" % delta_ms,
            TOKEN_END,
            b"%d" % expiry_ms,
            HEADER_END,
            payload,
        )
    )


def tombstone(token: bytes) -> bytes:
    return TOMBSTONE_MARK + token


def lease_of(raw: bytes | None) -> bytes:
    """What a conditional store must still find: ``b""`` for no entry, else ``b"="`` and the
    header of what the reader saw (the whole value if it has none, even an empty one)."""
    if raw is None:
        return ABSENT_LEASE
    end = raw.find(HEADER_END)
    return PRESENT_MARK + (raw if end < 0 else raw[: end + 1])


def lease_matches(lease: bytes, current: bytes | None) -> bool:
    """The check ``store_if_unchanged`` makes (the Redis script does the same in Lua)."""
    if lease == ABSENT_LEASE:
        return current is None
    return current is not None and current.startswith(lease[len(PRESENT_MARK) :])


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    tokens: tuple[bytes, ...]
    delta_ms: int
    expiry_ms: int
    payload: bytes


def parse(raw: bytes) -> Envelope | None:
    """Split a stored entry into its parts; ``None`` for tombstones and malformed bytes."""
    if raw.startswith(TOMBSTONE_MARK):
        return None
    end = raw.find(HEADER_END)
    if end < 0:
        return None
    fields = raw[:end].split(TOKEN_END)
    if len(fields) < 4:
        return None
    try:
        delta_ms, expiry_ms = int(fields[-2]), int(fields[-1])
    except ValueError:
        return None
    return Envelope(tuple(fields[:-3]), delta_ms, expiry_ms, raw[end + 1 :])


def timing_of(raw: bytes, stamp_length: int) -> tuple[int, int, int]:
    """``(delta_ms, expiry_ms, payload_start)`` of an entry already known to match its stamp."""
    end = raw.index(HEADER_END, stamp_length)
    _nonce, delta, expiry = raw[stamp_length:end].split(TOKEN_END)
    return int(delta), int(expiry), end + 1
