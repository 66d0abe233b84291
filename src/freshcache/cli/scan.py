"""Key samples from a Redis server, or from every primary of a Redis Cluster.

On one server the sample is a bounded SCAN with TTLs and MEMORY USAGE in pipelines (the
audit's live check, which also shows freshcache's own token keys). On a cluster each key lives
on one primary under a hash tag, with token copies in every shard, so the sample goes through
freshcache's own Cache: ``Cache.list_keys`` scans every primary and returns logical names (tags
stripped, copies merged, token keys left out), and ``Cache.inspect`` gives each key's TTL and
size. That costs a few round trips per key, run concurrently in bounded batches.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from freshcache.audit.live import KeyInfo, KeySample, sample_keys
from freshcache.cli.urls import check_backend_url, is_cluster, open_cache

if TYPE_CHECKING:
    from freshcache import Cache

#: Keys inspected at once on a cluster: enough to hide latency, few enough for the pool.
_INSPECT_BATCH = 50


async def sample(
    url: str, namespace: str, match: str, limit: int, call_timeout: float
) -> KeySample:
    """Up to ``limit`` keys of ``namespace`` matching ``match``, with TTLs and sizes."""
    check_backend_url(url)
    if not is_cluster(url):
        return await sample_keys(url, namespace, match, limit, call_timeout)
    return await _sample_cluster(url, namespace, match, limit, call_timeout)


async def _sample_cluster(
    url: str, namespace: str, match: str, limit: int, call_timeout: float
) -> KeySample:
    cache = await open_cache(url, namespace, call_timeout)
    try:
        names, complete = await _user_keys(cache, match, limit)
        infos: list[KeyInfo] = []
        prefix = namespace + ":"
        for start in range(0, min(len(names), limit), _INSPECT_BATCH):
            batch = names[start : min(start + _INSPECT_BATCH, limit)]
            found = await asyncio.gather(*(cache.inspect(name) for name in batch))
            for info in found:
                if info["state"] == "absent":
                    continue  # expired between the scan and the look
                key = str(info["key"]).removeprefix(prefix)
                ttl = info.get("ttl_ms")  # PTTL: -1 means "no expiry"
                no_expiry = not isinstance(ttl, int) or ttl < 0
                infos.append(KeyInfo(key, None if no_expiry else ttl, info.get("size")))
        return KeySample(tuple(infos), complete)
    finally:
        await cache.aclose()


async def _user_keys(cache: Cache, match: str, limit: int) -> tuple[list[str], bool]:
    """Up to ``limit`` user keys, and whether the scan saw them all (``Cache.list_keys``
    leaves freshcache's own keys out before the limit, within a bounded SCAN)."""
    listing = await cache.list_keys(match, limit)
    return sorted(listing.keys), listing.complete
