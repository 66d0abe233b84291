"""A bounded listing of a namespace's user keys, and whether it is complete (pure).

A namespace's keyspace also holds freshcache's own keys (token copies, entry tokens, the
server identity), which a listing leaves out. They are dropped *before* the limit is applied,
so ``limit`` counts user keys only; what bounds the work is a separate budget: the most stored
keys one listing may examine (SCAN stops there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

#: Stored keys one listing examines at least, however small its limit.
MIN_SCAN_BUDGET = 10_000
#: Stored keys examined per user key asked for, above that floor.
SCAN_BUDGET_PER_KEY = 10


@dataclasses.dataclass(frozen=True, slots=True)
class KeyListing:
    """Up to ``limit`` user keys, in SCAN order, and whether they are all there are.

    ``complete`` is true only when the SCAN ran to its end within its budget and found no
    more than ``limit`` user keys; false means there may be more (the limit was reached, or
    the budget ran out first)."""

    keys: list[str]
    complete: bool


def scan_budget(limit: int, scan_limit: int | None) -> int:
    """The most stored keys to examine for ``limit`` user keys; checks both arguments."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number of at least 1, got {limit!r}")
    if scan_limit is None:
        return max(MIN_SCAN_BUDGET, limit * SCAN_BUDGET_PER_KEY)
    if isinstance(scan_limit, bool) or not isinstance(scan_limit, int) or scan_limit < limit:
        raise ValueError(
            f"scan_limit must be a whole number of at least limit ({limit}), got {scan_limit!r}"
        )
    return scan_limit


def user_keys(
    scanned: Iterable[str], reserved_prefix: str, limit: int, budget: int, asked: int
) -> KeyListing:
    """The listing from what one SCAN returned when asked for ``asked`` (= ``budget`` + 1)
    keys: more than ``budget`` back means it stopped before its end."""
    seen = list(scanned)
    ran_to_end = len(seen) < asked
    found = dict.fromkeys(k for k in seen[:budget] if not k.startswith(reserved_prefix))
    names = list(found)
    return KeyListing(names[:limit], ran_to_end and len(names) <= limit)
