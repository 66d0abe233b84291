"""The backend primitives, as ``backends/base.py`` states them, on every backend and face
(the model is dogpile.cache's generic backend suite). What the engine relies on, one promise a
test: absent is ``None``, tokens are created only if absent, a conditional store checks the
lease and every token, locks belong to their owner, a sweep spares freshcache's own keys."""

from __future__ import annotations

from contract_helpers import Face

from freshcache import entry as envelope
from freshcache._engine.ops import (
    AcquireLock,
    Bump,
    CreateTokens,
    Delete,
    DeleteMatching,
    GetMany,
    ReleaseLock,
    SetValue,
    StoreIfUnchanged,
)
from freshcache.backends import EntryKeys

DAY_MS = 24 * 3600 * 1000


async def _with_tokens(face: Face, *segments: str) -> tuple[EntryKeys, list[bytes]]:
    keys = face.entry(*segments)
    fresh = [b"t%d" % i for i in range(len(keys.tokens))]
    created = await face.run(CreateTokens(keys, keys.tokens, fresh, DAY_MS))
    return keys, created


async def test_absent_keys_read_as_none(face: Face) -> None:
    keys = face.entry("a", "f", "1")
    assert await face.run(GetMany(keys)) == [None, None, None]
    assert await face.call("ttl_ms", keys.entry) is None


async def test_set_is_read_back_with_its_ttl(face: Face) -> None:
    keys = face.entry("a", "f", "1")
    await face.run(SetValue(keys.entry, b"value", 60_000))
    assert (await face.run(GetMany(keys)))[0] == b"value"
    ttl = await face.call("ttl_ms", keys.entry)
    assert ttl is not None
    assert 0 < ttl <= 60_000


async def test_tokens_are_created_only_where_absent(face: Face) -> None:
    keys = face.entry("a", "f", "1")
    first = await face.run(CreateTokens(keys, keys.tokens, [b"one", b"two"], DAY_MS))
    assert first == [b"one", b"two"]
    again = await face.run(CreateTokens(keys, keys.tokens, [b"three", b"four"], DAY_MS))
    assert again == [b"one", b"two"]  # the tokens there win: a token is never replaced here
    assert await face.run(GetMany(keys)) == [None, b"one", b"two"]


async def test_bump_replaces_a_token_where_the_entry_reads_it(face: Face) -> None:
    keys = face.entry("a", "f", "1")
    await face.run(CreateTokens(keys, keys.tokens, [b"root", b"a0"], DAY_MS))
    await face.run(Bump(keys.tokens[1], b"a1", DAY_MS))
    assert await face.run(GetMany(keys)) == [None, b"root", b"a1"]


async def test_store_under_an_absent_lease_only_if_still_absent(face: Face) -> None:
    keys, _ = await _with_tokens(face, "a", "f", "1")
    store = StoreIfUnchanged(keys, b"v1", 60_000, envelope.ABSENT_LEASE, DAY_MS)
    assert await face.run(store)
    assert (await face.run(GetMany(keys)))[0] == b"v1"
    assert not await face.run(store)  # something is there now: the lease is lost


async def test_store_under_a_present_lease_only_if_unchanged(face: Face) -> None:
    keys, _ = await _with_tokens(face, "a", "f", "1")
    seen = envelope.pack(b"x\x1f", 1, 2, b"old")
    await face.run(SetValue(keys.entry, seen, 60_000))
    lease = envelope.lease_of(seen)
    assert await face.run(StoreIfUnchanged(keys, b"new", 60_000, lease, DAY_MS))
    # The entry changed since that lease was taken (our own store): a second store loses.
    assert not await face.run(StoreIfUnchanged(keys, b"newer", 60_000, lease, DAY_MS))
    assert (await face.run(GetMany(keys)))[0] == b"new"


async def test_a_tombstone_defeats_a_store_that_read_before_it(face: Face) -> None:
    keys, _ = await _with_tokens(face, "a", "f", "1")
    await face.run(SetValue(keys.entry, envelope.tombstone(b"t"), 60_000))
    store = StoreIfUnchanged(keys, b"late", 60_000, envelope.ABSENT_LEASE, DAY_MS)
    assert not await face.run(store)


async def test_no_store_when_a_token_is_missing(face: Face) -> None:
    keys = face.entry("a", "f", "1")
    await face.run(CreateTokens(keys, keys.tokens[:1], [b"root"], DAY_MS))  # the second is absent
    store = StoreIfUnchanged(keys, b"v", 60_000, envelope.ABSENT_LEASE, DAY_MS)
    assert not await face.run(store)
    assert (await face.run(GetMany(keys)))[0] is None


async def test_a_store_extends_short_lived_tokens(face: Face) -> None:
    keys = face.entry("a", "f", "1")
    await face.run(CreateTokens(keys, keys.tokens, [b"r", b"a"], 10_000))  # far below half
    store = StoreIfUnchanged(keys, b"v", 60_000, envelope.ABSENT_LEASE, DAY_MS)
    assert await face.run(store)
    if face.backends.kind == "cluster":
        return  # token copies live under the entry's shard tag: ttl_ms reads the own shard
    for token_key in keys.tokens:
        ttl = await face.call("ttl_ms", token_key)
        assert ttl is not None
        assert ttl > DAY_MS // 2


async def test_delete_counts_what_existed(face: Face) -> None:
    one, two = face.entry("a", "f", "1"), face.entry("a", "f", "2")
    await face.run(SetValue(one.entry, b"1", 60_000))
    assert await face.run(Delete((one.entry, two.entry))) == 1
    assert (await face.run(GetMany(one)))[0] is None
    assert await face.run(Delete(())) == 0


async def test_delete_matching_spares_the_kept_prefix(face: Face) -> None:
    keys, _ = await _with_tokens(face, "a", "f", "1")
    other = face.entry("b", "f", "1")
    await face.run(SetValue(keys.entry, b"1", 60_000))
    await face.run(SetValue(other.entry, b"2", 60_000))
    deleted = await face.run(DeleteMatching(f"{face.ns}:*", f"{face.ns}:__"))
    assert deleted == 2
    values = await face.run(GetMany(keys))
    assert values == [None, b"t0", b"t1"]  # freshcache's own keys were kept


async def test_a_lock_belongs_to_its_owner(face: Face) -> None:
    key = f"{face.ns}:__lock__:a:f:1:digest"
    assert await face.run(AcquireLock(key, b"me", 60_000))
    assert not await face.run(AcquireLock(key, b"you", 60_000))
    await face.run(ReleaseLock(key, b"you"))  # not the owner: nothing happens
    assert not await face.run(AcquireLock(key, b"you", 60_000))
    await face.run(ReleaseLock(key, b"me"))
    assert await face.run(AcquireLock(key, b"you", 60_000))


async def test_scan_is_bounded_and_names_logical_keys(face: Face) -> None:
    for i in range(5):
        await face.run(SetValue(face.entry("s", "f", str(i)).entry, b"x", 60_000))
    found = await face.call("scan", f"{face.ns}:s:*", 3)
    assert len(found) == 3
    assert all(key.startswith(f"{face.ns}:s:f:") for key in found)
    everything = await face.call("scan", f"{face.ns}:s:*", 100)
    assert sorted(everything) == [f"{face.ns}:s:f:{i}" for i in range(5)]


async def test_ping_answers(face: Face) -> None:
    assert await face.call("ping") is None
