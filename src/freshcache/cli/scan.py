"""Key samples from a Redis server, or from every primary of a Redis Cluster.

On one server the sample is a bounded SCAN with TTLs and MEMORY USAGE in pipelines (the
audit's live check, which also shows freshcache's own token keys). On a cluster each key lives
on one primary under a hash tag, with token copies in every shard, so the sample goes through
freshcache's own Cache: ``Cache.keys`` scans every primary and returns logical names (tags
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
#: Most keys one Cache.keys() call may return while looking for ``limit`` user keys.
_RAW_CAP = 1_000_000


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
    """Up to ``limit`` + 1 user keys (the extra one says "there are more"), and whether the
    scan saw them all.

    ``Cache.keys(match, n)`` stops after ``n`` stored keys *before* it leaves out
    freshcache's own (a token has a copy in every shard), so ``n`` grows until the user
    keys pass the limit or stop growing.
    """
    wanted = limit + 1
    previous = -1
    while True:
        found = await cache.keys(match, wanted)
        if len(found) > limit:
            return sorted(found), False
        if len(found) == previous:
            return sorted(found), True  # eight times more room found nothing new
        if wanted >= _RAW_CAP:
            return sorted(found), False  # cannot tell: say it may be incomplete
        previous = len(found)
        wanted = min(wanted * 8, _RAW_CAP)
