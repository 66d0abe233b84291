"""``Cache.list_keys``: the limit counts user keys only (freshcache's own keys are left out
first), the SCAN work is bounded, and the listing says whether it is complete."""

from __future__ import annotations

import pytest

from freshcache import Cache
from freshcache.key_listing import KeyListing

USER_KEYS = 5
#: Exact-key invalidations of keys never stored: each leaves only an entry token behind.
TOKENS = 40


async def crowded(cache: Cache) -> list[str]:
    """A namespace holding ``USER_KEYS`` entries among more than ``TOKENS`` token keys."""

    @cache.cached(ttl=60, key_prefix="item")
    async def item(n: int) -> int:
        return n

    for n in range(USER_KEYS):
        assert await item(n) == n
    for n in range(1000, 1000 + TOKENS):
        await item.invalidate(n)
    return sorted(item.key_for(n) for n in range(USER_KEYS))


async def test_the_limit_counts_user_keys_only(cache: Cache) -> None:
    expected = await crowded(cache)
    listing = await cache.list_keys("*", USER_KEYS)
    assert isinstance(listing, KeyListing)
    assert sorted(listing.keys) == expected
    assert listing.complete


async def test_a_limit_below_the_user_keys_says_incomplete(cache: Cache) -> None:
    expected = await crowded(cache)
    listing = await cache.list_keys("*", USER_KEYS - 2)
    assert len(listing.keys) == USER_KEYS - 2
    assert set(listing.keys) <= set(expected)
    assert not listing.complete


async def test_a_scan_budget_smaller_than_the_keyspace_says_incomplete(cache: Cache) -> None:
    await crowded(cache)
    listing = await cache.list_keys("*", USER_KEYS, scan_limit=USER_KEYS)
    assert not listing.complete  # more than 5 stored keys: SCAN stopped before its end
    assert len(listing.keys) <= USER_KEYS


async def test_keys_keeps_its_signature_and_returns_user_keys(cache: Cache) -> None:
    expected = await crowded(cache)
    assert sorted(await cache.keys("*", USER_KEYS)) == expected
    assert sorted(await cache.keys("item:*")) == expected


async def test_an_empty_namespace_is_a_complete_empty_listing(cache: Cache) -> None:
    assert await cache.list_keys("*", 1) == KeyListing([], True)


@pytest.mark.parametrize(
    ("limit", "scan_limit", "named"),
    [(0, None, "limit"), (-1, None, "limit"), (True, None, "limit"), (10, 9, "scan_limit")],
)
async def test_bad_bounds_are_named(
    cache: Cache, limit: int, scan_limit: int | None, named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named} must be"):
        await cache.list_keys("*", limit, scan_limit=scan_limit)
