"""The cluster backend's pure parts, no server: shard tags, key placement, URL parsing and the
slot map. These decide where every key lives, so they are pinned exactly."""

from __future__ import annotations

import collections
import fnmatch

import pytest
from redis.crc import key_slot

from freshcache.backends.cluster import (
    CLUSTER_SLOTS,
    DEFAULT_SHARDS,
    MAX_SHARDS,
    TAG_GLOB,
    AsyncClusterBackend,
    ShardLayout,
    SyncClusterBackend,
    live_replicas,
    parse_cluster_slots,
    parse_cluster_url,
)

# -- tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 16, 64, 100, 256, MAX_SHARDS])
def test_tag_i_hashes_into_the_ith_equal_range_of_slots(shards: int) -> None:
    layout = ShardLayout(shards)
    assert len(layout.tags) == len(set(layout.tags)) == shards
    for shard, (tag, slot) in enumerate(zip(layout.tags, layout.slots, strict=True)):
        assert key_slot(f"{tag}any:key".encode()) == slot  # the tag decides the slot
        assert slot * shards // CLUSTER_SLOTS == shard


def test_tags_are_stable_across_processes() -> None:
    # The placement is shared by every process of a deployment: it must never change silently.
    assert ShardLayout(16).tags[:4] == ("{fc:0001}", "{fc:0023}", "{fc:000d}", "{fc:002b}")
    assert ShardLayout(16).shard_of("myhibachi:booking:stats:get_dashboard_stats:a1b2") == 13


def test_the_tag_glob_matches_every_tag_and_exactly_one_tag() -> None:
    layout = ShardLayout(MAX_SHARDS)
    assert all(fnmatch.fnmatchcase(tag, TAG_GLOB) for tag in layout.tags)
    # Fixed width: the glob cannot swallow part of the logical key, even one with braces in it.
    key = "{fc:0001}ns:a}ns:b"
    assert fnmatch.fnmatchcase(key, TAG_GLOB + "ns:a}ns:b")
    assert not fnmatch.fnmatchcase(key, TAG_GLOB + "ns:b")


@pytest.mark.parametrize("shards", [0, -1, MAX_SHARDS + 1, True])
def test_shard_count_is_bounded(shards: int) -> None:
    with pytest.raises(ValueError, match="shards"):
        ShardLayout(shards)


@pytest.mark.parametrize("shards", [3, 16, 48, 64, 256, MAX_SHARDS])
def test_shards_spread_evenly_over_a_default_three_primary_cluster(shards: int) -> None:
    # redis-cli --cluster create gives 3 primaries equal contiguous slot ranges. Each shard owns
    # an equal range too, so only the 2 ranges that straddle a node boundary can tip either way.
    bounds = (0, 5461, 10923, CLUSTER_SLOTS)
    per_node = collections.Counter(
        next(i for i in range(3) if bounds[i] <= slot < bounds[i + 1])
        for slot in ShardLayout(shards).slots
    )
    assert len(per_node) == 3
    assert max(per_node.values()) - min(per_node.values()) <= 2


def test_entries_spread_evenly_over_the_shards() -> None:
    layout = ShardLayout(DEFAULT_SHARDS)
    counts = collections.Counter(
        layout.shard_of(f"ns:booking:availability:2025-10-{d:02}:get_available_slots:{h:04x}")
        for d in range(1, 29)
        for h in range(200)
    )
    expected = 28 * 200 / DEFAULT_SHARDS
    assert len(counts) == DEFAULT_SHARDS
    assert all(abs(n - expected) < 0.15 * expected for n in counts.values())


def test_physical_and_logical_names() -> None:
    layout = ShardLayout(16)
    entry = "ns:booking:stats:f:1234"
    physical = layout.physical(entry)
    assert physical == layout.tags[layout.shard_of(entry)] + entry
    assert layout.logical(physical) == entry
    assert layout.logical(entry) == entry  # not ours: unchanged
    # A token key is stored in the shard of the entry it is read with.
    token = "ns:__gen__:booking"
    assert layout.physical(token, route=entry).startswith(layout.tags[layout.shard_of(entry)])
    assert layout.copies(token) == [tag + token for tag in layout.tags]
    assert layout.slot_of(physical.encode()) == key_slot(physical.encode())
    assert layout.slot_of(b"{other}x") == key_slot(b"{other}x")


# -- URLs -------------------------------------------------------------------------------------


def test_url_with_several_seeds_and_shards() -> None:
    settings = parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001/?shards=64")
    assert settings.seeds == ("10.0.0.1:7000", "10.0.0.2:7001")
    assert settings.shards == 64
    assert settings.wait_replicas is None  # every live replica acknowledges invalidations
    assert not settings.tls
    assert settings.node_url("10.0.0.3:7005") == "redis://10.0.0.3:7005/0"


def test_url_defaults_tls_credentials_ipv6_and_node_options() -> None:
    settings = parse_cluster_url(
        "rediss+cluster://app:s%40cret@[::1]:7000,cache-2?ssl_cert_reqs=none&client_name=web"
    )
    assert settings.seeds == ("::1:7000", "cache-2:6379")
    assert settings.shards == DEFAULT_SHARDS
    assert settings.tls
    assert settings.node_url("::1:7000") == (
        "rediss://app:s%40cret@[::1]:7000/0?ssl_cert_reqs=none&client_name=web"
    )


@pytest.mark.parametrize(("value", "expected"), [("all", None), ("0", 0), ("2", 2)])
def test_wait_replicas_option(value: str, expected: int | None) -> None:
    settings = parse_cluster_url(f"redis+cluster://h:1?wait_replicas={value}&shards=4")
    assert settings.wait_replicas == expected
    assert settings.query == ""  # freshcache's options are not passed on to redis-py


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h:1?wait_replicas=-1", "wait_replicas"),
        ("redis+cluster://h:1?wait_replicas=some", "wait_replicas"),
        ("redis://h:1", "not a redis\\+cluster"),
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1?db=3", "only 0"),
        ("redis+cluster://h:1?shards=0", "shards"),
        ("redis+cluster://h:1?shards=lots", "shards"),
        ("redis+cluster://h:0", "bad port"),
        ("redis+cluster://h:x", "bad port"),
        ("redis+cluster://:7000", "empty host"),
    ],
)
def test_bad_urls_fail_with_a_message_that_names_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cluster_url(url)


def test_error_messages_do_not_show_the_password() -> None:
    with pytest.raises(ValueError, match=r"app:\*\*\*@h:1") as caught:
        parse_cluster_url("redis+cluster://app:s3cret@h:1?shards=0")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("backend", [AsyncClusterBackend, SyncClusterBackend])
def test_an_unknown_node_option_fails_when_the_backend_is_built(backend: type) -> None:
    # Not as a TypeError inside redis-py on the first call, where it would reach a caller.
    with pytest.raises(ValueError, match="bad option in cluster URL"):
        backend("redis+cluster://127.0.0.1:1?no_such_option=1", 0.05, 10, 1.0)


# -- slot map ---------------------------------------------------------------------------------


def test_cluster_slots_reply_becomes_a_slot_map() -> None:
    reply = [
        [0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
        [5461, 10922, [b"", 7001, b"id2"]],  # a node that does not know its own address
        [10923, 16383, [b"?", 7002, b"id3", {b"hostname": b"c"}], [b"10.0.0.6", 7005, b"id6"]],
    ]
    slot_map = parse_cluster_slots(reply, "10.0.0.9")
    assert slot_map.owners[0] == slot_map.owners[5460] == "10.0.0.1:7000"
    assert slot_map.owners[5461] == "10.0.0.9:7001"
    assert slot_map.owners[16383] == "10.0.0.9:7002"
    assert slot_map.serving() == ("10.0.0.1:7000", "10.0.0.9:7001", "10.0.0.9:7002")
    assert slot_map.replicas == ("10.0.0.4:7003", "10.0.0.6:7005")
    moved = slot_map.moved(42, "10.0.0.6:7005")
    assert moved.owners[42] == "10.0.0.6:7005"
    assert moved.owners[41] == "10.0.0.1:7000"
    assert "10.0.0.6:7005" in moved.serving()


CLUSTER_NODES = """\
p1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
p2 10.0.0.2:7001@17001 master - 0 1 2 connected 5461-16383
r1 10.0.0.4:7003@17003 slave p1 0 1 1 connected
r2 10.0.0.5:7004@17004 slave,fail? p1 0 1 1 connected
r3 10.0.0.6:7005@17005 slave p2 0 1 2 connected
r4 10.0.0.7:7006@17006 slave,fail p2 0 1 2 disconnected
"""


def test_replicas_are_counted_from_cluster_nodes_by_node_id() -> None:
    # A replica the cluster suspects or has failed cannot be promoted: it is not waited for.
    assert live_replicas(CLUSTER_NODES) == {"p1": 1, "p2": 1}
    # CLUSTER SLOTS of a fresh cluster lists no replica (offsets still 0), and may announce
    # hostnames: the counts come from CLUSTER NODES, matched by node id.
    slots = [
        [0, 5460, [b"cache-1", 7000, b"p1"]],
        [5461, 16383, [b"cache-2", 7001, b"p2"]],
    ]
    with_nodes = parse_cluster_slots(slots, "x", CLUSTER_NODES.encode())
    assert dict(with_nodes.replica_counts) == {"cache-1:7000": 1, "cache-2:7001": 1}
    assert dict(parse_cluster_slots(slots, "x").replica_counts) == {
        "cache-1:7000": 0,
        "cache-2:7001": 0,
    }


def test_uncovered_slots_have_no_owner_and_an_empty_reply_is_refused() -> None:
    slot_map = parse_cluster_slots([[0, 99, [b"h", 1, b"id"]]], "h")
    assert slot_map.owners[99] == "h:1"
    assert slot_map.owners[100] is None
    with pytest.raises(ValueError, match="no slots"):
        parse_cluster_slots([], "h")
