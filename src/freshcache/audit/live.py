"""Live checks against a running backend and a service's /metrics (the only audit module that
talks to a server; redis and prometheus_client are imported when a check runs, not before).

Everything is bounded: the key scan is SCAN with COUNT, stopped at a sample limit, never KEYS;
per-key commands go in pipelines of a few hundred. Managed Redis services that refuse
MEMORY USAGE get STRLEN instead (the value size, without the key's overhead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from freshcache.audit import globmatch
from freshcache.audit.config import AuditConfig
from freshcache.audit.model import CachedRead, LiveReport
from freshcache.keys import RESERVED_PREFIX, SEGMENT_SEPARATOR
from freshcache.staleness import MeasuredStaleness, measured_staleness

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_BATCH = 500
_EXAMPLES = 10
_BREAKER = {0: "closed", 1: "half-open", 2: "open"}


class LiveError(Exception):
    """A backend or endpoint that cannot be used, said in one line (never a traceback)."""


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def check_redis_url(url: str) -> None:
    if url.startswith("memory://"):
        raise LiveError(
            "memory:// lives inside one process and cannot be reached from outside; give the "
            "redis:// URL of the backend, or the service's http(s):// /metrics URL"
        )
    if is_cluster_url(url):
        return  # scanned primary by primary by the sampler given to live_report
    if not url.startswith(REDIS_SCHEMES):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else url
        raise LiveError(
            f"not a Redis URL: {redact(scheme)!s} (expected redis://host:port/db, "
            "rediss://... for TLS, or unix:///path)"
        )


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str) -> bool:
    return url.lower().startswith(CLUSTER_SCHEMES)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyInfo:
    key: str  # relative to the namespace
    ttl_ms: int | None  # None: no expiry
    size: int | None  # bytes (MEMORY USAGE, or STRLEN where that is refused)


@dataclasses.dataclass(frozen=True, slots=True)
class KeySample:
    keys: tuple[KeyInfo, ...]
    complete: bool  # False: stopped at the limit; the numbers are a sample


#: ``(url, namespace, match, limit, call_timeout) -> KeySample``
Sampler = Callable[[str, str, str, int, float], Awaitable[KeySample]]


def _redis_error(url: str, exc: BaseException) -> LiveError:
    detail = str(exc).strip() or type(exc).__name__
    return LiveError(f"cannot use the Redis server at {redact(url)}: {detail}")


async def sample_keys(
    url: str, namespace: str, match: str = "*", limit: int = 10_000, call_timeout: float = 5.0
) -> KeySample:
    """Up to ``limit`` keys of ``namespace`` matching ``match``, with TTLs and sizes, from one
    Redis server (a cluster is sampled by the sampler given to `live_report`)."""
    check_redis_url(url)
    if is_cluster_url(url):
        raise LiveError(
            f"{redact(url)}: a Redis Cluster is sampled primary by primary; run the audit "
            "through the freshcache command line, which scans every primary"
        )
    try:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError, ResponseError
    except ImportError:  # pragma: no cover - redis is a dependency of freshcache
        raise LiveError("the live checks need redis-py: pip install redis") from None
    try:
        client = aioredis.from_url(
            url,
            socket_timeout=call_timeout,
            socket_connect_timeout=call_timeout,
            decode_responses=False,
        )
    except ValueError as exc:
        raise LiveError(f"bad Redis URL {redact(url)}: {exc}") from None
    prefix = namespace + SEGMENT_SEPARATOR
    try:
        found: list[str] = []
        cursor = 0
        complete = False
        while len(found) < limit:
            cursor, batch = await client.scan(
                cursor=cursor, match=glob_escape(prefix) + match, count=_BATCH
            )
            found.extend(
                k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in batch
            )
            if cursor == 0:
                complete = True
                break
        found = sorted(set(found))
        complete = complete and len(found) <= limit  # a batch can overshoot the limit
        found = found[:limit]
        infos: list[KeyInfo] = []
        memory_usage = True
        for start in range(0, len(found), _BATCH):
            chunk = found[start : start + _BATCH]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.pttl(key)
                if memory_usage:
                    pipe.memory_usage(key)
                else:
                    pipe.strlen(key)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if memory_usage and any(isinstance(r, ResponseError) for r in replies[1::2]):
                memory_usage = False  # refused by a managed service: sizes from STRLEN
                pipe = client.pipeline(transaction=False)
                for key in chunk:
                    pipe.pttl(key)
                    pipe.strlen(key)
                replies = await pipe.execute(raise_on_error=False)
            for key, ttl, size in zip(chunk, replies[0::2], replies[1::2], strict=True):
                if not isinstance(ttl, int) or ttl == -2:
                    continue  # expired between SCAN and PTTL
                infos.append(
                    KeyInfo(
                        key=key[len(prefix) :],
                        ttl_ms=None if ttl == -1 else ttl,
                        size=size if isinstance(size, int) else None,
                    )
                )
        return KeySample(tuple(sorted(infos, key=lambda k: k.key)), complete)
    except (RedisError, OSError) as exc:
        raise _redis_error(url, exc) from None
    finally:
        await client.aclose()


def group_of(key: str) -> str:
    """The prefix a key is counted under when the code is not known: the segments before the
    function name and the args hash (``booking:stats:f:0123...`` -> ``booking:stats``)."""
    segments = key.split(SEGMENT_SEPARATOR)
    if segments[0].startswith(RESERVED_PREFIX):
        return segments[0]  # freshcache's own: __gen__ tokens, __lock__ locks
    if len(segments) >= 3:
        return SEGMENT_SEPARATOR.join(segments[:-2])
    return segments[0]


def _matcher(reads: Sequence[CachedRead]) -> list[tuple[str, list[globmatch.Item]]]:
    out = []
    for read in reads:
        if read.key is not None and read.prefix is not None:
            out.append((read.prefix.display, globmatch.compile_key(read.key)))
    return out


def declared_prefix(key: str, matchers: list[tuple[str, list[globmatch.Item]]]) -> str | None:
    if key.split(SEGMENT_SEPARATOR, 1)[0].startswith(RESERVED_PREFIX):
        return key.split(SEGMENT_SEPARATOR, 1)[0]
    items = [globmatch.Item(globmatch.CharSet(frozenset(ch), False), False) for ch in key]
    for label, pattern in matchers:
        if globmatch.intersects(items, pattern):
            return label
    return None


# -- metrics -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PrefixCounters:
    prefix: str
    hits: float = 0
    misses: float = 0
    stale: float = 0
    sets: float = 0
    invalidations: float = 0
    errors: float = 0
    bypasses: float = 0

    @property
    def lookups(self) -> int:
        return int(self.hits + self.misses + self.stale)

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    prefixes: tuple[PrefixCounters, ...]
    breaker_state: str | None
    pending_invalidations: int | None
    #: What the service's sampled shadow reads measured (empty with ``verify_rate`` 0).
    staleness: tuple[MeasuredStaleness, ...] = ()


_COUNTERS = {
    "freshcache_hits_total": "hits",
    "freshcache_misses_total": "misses",
    "freshcache_stale_total": "stale",
    "freshcache_sets_total": "sets",
    "freshcache_invalidations_total": "invalidations",
    "freshcache_errors_total": "errors",
    "freshcache_bypasses_total": "bypasses",
}


def parse_metrics(text: str) -> MetricsSnapshot:
    """freshcache's series from a Prometheus text exposition (other series are ignored)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        raise LiveError(
            "reading /metrics needs prometheus-client: pip install 'freshcache[prometheus]'"
        ) from None
    per: dict[str, dict[str, float]] = {}
    breaker: str | None = None
    pending: int | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                if name in _COUNTERS:
                    prefix = sample.labels.get("prefix", "")
                    field = _COUNTERS[name]
                    counters = per.setdefault(prefix, {})
                    counters[field] = counters.get(field, 0.0) + sample.value
                elif name == "freshcache_breaker_state":
                    breaker = _BREAKER.get(int(sample.value))  # other values: not ours
                elif name == "freshcache_pending_invalidations":
                    pending = (pending or 0) + int(sample.value)
        staleness = tuple(measured_staleness(text))
    except ValueError as exc:
        raise LiveError(f"the metrics endpoint did not return Prometheus text: {exc}") from None
    prefixes = tuple(PrefixCounters(prefix, **counters) for prefix, counters in sorted(per.items()))
    return MetricsSnapshot(prefixes, breaker, pending, staleness)


def _get(url: str, timeout: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(
        request, timeout=timeout
    ) as response:  # http(s) only: checked by the caller
        body: bytes = response.read(16 * 1024 * 1024)
        return body.decode("utf-8", "replace")


async def fetch_metrics(url: str, call_timeout: float = 5.0) -> MetricsSnapshot:
    if not url.startswith(("http://", "https://")):
        raise LiveError(f"not a metrics URL: {redact(url)} (expected http(s)://host:port/metrics)")
    try:
        text = await asyncio.to_thread(_get, url, call_timeout)
    except urllib.error.HTTPError as exc:
        raise LiveError(f"{redact(url)} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LiveError(f"cannot reach {redact(url)}: {reason}") from None
    return parse_metrics(text)


# -- the live audit ----------------------------------------------------------------------------


async def live_report(
    url: str,
    namespace: str,
    reads: Sequence[CachedRead],
    config: AuditConfig,
    metrics_url: str | None = None,
    call_timeout: float = 5.0,
    sampler: Sampler | None = None,
) -> LiveReport:
    """Sample the namespace, classify its keys by the code's prefixes, read the metrics.

    ``sampler(url, namespace, match, limit, call_timeout)`` takes the key sample; the default
    reads one Redis server. The command line passes its own, which also scans every primary
    of a Redis Cluster through freshcache's cluster backend (a layer above this one)."""
    errors: list[str] = []
    sample = KeySample((), False)
    take = sampler if sampler is not None else sample_keys
    try:
        sample = await take(url, namespace, "*", config.live_sample, call_timeout)
    except LiveError as exc:
        errors.append(str(exc))
    matchers = _matcher(reads)
    orphans: list[str] = []
    unknown: list[str] = []
    memory: dict[str, list[int]] = {}
    for info in sample.keys:
        label = declared_prefix(info.key, matchers)
        if info.ttl_ms is None:
            orphans.append(info.key)
        if label is None:
            unknown.append(info.key)
            label = f"(undeclared) {group_of(info.key)}"
        slot = memory.setdefault(label, [0, 0])
        slot[0] += 1
        slot[1] += info.size or 0
    snapshot: MetricsSnapshot | None = None
    if metrics_url is not None:
        try:
            snapshot = await fetch_metrics(metrics_url, call_timeout)
        except LiveError as exc:
            errors.append(str(exc))
    return LiveReport(
        url=redact(url),
        namespace=namespace,
        sampled_keys=len(sample.keys),
        scan_complete=sample.complete,
        orphans=tuple(orphans[:_EXAMPLES]),
        orphan_count=len(orphans),
        unknown_prefix=tuple(unknown[:_EXAMPLES]),
        unknown_prefix_count=len(unknown),
        memory_by_prefix=tuple(
            (label, n, size)
            for label, (n, size) in sorted(memory.items(), key=lambda kv: (-kv[1][1], kv[0]))
        ),
        metrics_url=redact(metrics_url) if metrics_url else None,
        hit_ratios=tuple(
            (p.prefix, p.hit_ratio, p.lookups) for p in (snapshot.prefixes if snapshot else ())
        ),
        breaker_state=snapshot.breaker_state if snapshot else None,
        pending_invalidations=snapshot.pending_invalidations if snapshot else None,
        stale_hits=tuple(
            (m.prefix, m.rate, int(m.shadow_checks), int(m.stale_hits))
            for m in (snapshot.staleness if snapshot else ())
            # A service exports one cache per namespace label; unlabelled series are its own.
            if m.namespace in ("", namespace)
        ),
        error="; ".join(errors),
    )
