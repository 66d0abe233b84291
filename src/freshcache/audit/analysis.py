"""From the scan to the tables: which write invalidates which read, how stale a read can get,
and which invalidations are wider than they need to be."""

from __future__ import annotations

import dataclasses

from freshcache.audit import globmatch
from freshcache.audit.commits import commit_context
from freshcache.audit.footprint import read_footprint, write_footprint
from freshcache.audit.model import (
    CachedRead,
    Coverage,
    HoleKind,
    OverBroad,
    Staleness,
    SymText,
    Write,
)
from freshcache.audit.scanner import ScanResult


@dataclasses.dataclass(frozen=True, slots=True)
class Tables:
    reads: tuple[CachedRead, ...]
    writes: tuple[Write, ...]
    coverage: tuple[Coverage, ...]
    over_broad: tuple[OverBroad, ...]
    staleness: dict[str, Staleness]


def _with_footprints(scan: ScanResult) -> list[CachedRead]:
    reads = []
    for read in scan.reads:
        mod = scan.modules[read.module]
        node = mod.functions.get(read.qualname) or _find(scan, read.module, read.qualname)
        footprint = read_footprint(scan.resolver, mod, read.qualname, node) if node else None
        reads.append(dataclasses.replace(read, footprint=footprint))
    return reads


def _find(scan: ScanResult, module: str, qualname: str):  # type: ignore[no-untyped-def]
    # Nested functions are not in the module's table; the scan's facts have every function.
    return next(
        (f.node for f in scan.functions if f.module == module and f.qualname == qualname), None
    )


def _writes(scan: ScanResult) -> list[Write]:
    writes: list[Write] = []
    seen: set[str] = set()
    for raw in scan.writes:
        base = f"{raw.module}:{raw.qualname}"
        write_id = base if raw.kind == "decorator" else f"{base}@{raw.location.line}"
        n = 2
        while write_id in seen:
            write_id = f"{base}#{n}"
            n += 1
        seen.add(write_id)
        footprint = None
        if raw.function is not None:
            mod = scan.modules[raw.module]
            footprint = write_footprint(scan.resolver, mod, raw.qualname, raw.function.node)
        commit, evidence = commit_context(raw, scan.functions)
        writes.append(
            Write(
                api=raw.api,
                store=raw.store,
                source_text=raw.source_text,
                id=write_id,
                module=raw.module,
                qualname=raw.qualname,
                location=raw.location,
                kind=raw.kind,
                patterns=raw.patterns,
                footprint=footprint,
                commit=commit,
                commit_evidence=evidence,
            )
        )
    return writes


def _extent(read_key: SymText, write: Write, pattern: SymText) -> str:
    if write.kind == "entry":
        return "some"  # func.invalidate(*args): the one entry of those arguments
    if globmatch.covers_all(read_key, pattern):
        return "all"
    return "per-value" if pattern.holes else "some"


def build_tables(scan: ScanResult) -> Tables:
    reads = _with_footprints(scan)
    writes = _writes(scan)
    coverage: list[Coverage] = []
    over_broad: list[OverBroad] = []
    for write in writes:
        for pattern in write.patterns:
            if pattern.text is None or pattern.kind in ("malformed", "unknown"):
                continue
            if pattern.text.parts and not isinstance(pattern.text.parts[0], str):
                continue  # begins with a value the audit cannot see: it could match anything
            for read in reads:
                key = read.key
                if not reaches(write, read):
                    continue
                if key is None or not globmatch.matches(key, pattern.text):
                    continue
                extent = _extent(key, write, pattern.text)
                shown = pattern.text.display
                coverage.append(Coverage(read.id, write.id, shown, extent))
                reason = _over_broad_reason(read, write, extent)
                if reason:
                    over_broad.append(OverBroad(write.id, read.id, shown, reason))
    staleness = {read.id: _staleness(read, coverage) for read in reads}
    return Tables(tuple(reads), tuple(writes), tuple(coverage), tuple(over_broad), staleness)


def reaches(write: Write, read: CachedRead) -> bool:
    """Can this write's API touch this read's entries at all (same library, same instance)?"""
    if read.store.startswith("own:") or write.store.startswith("own:"):
        return read.store == write.store  # a decorator's private instance
    if read.store and write.store and read.store != write.store:
        return False
    w, r = write.api.split()[0], read.api.split()[0]
    if w == r:
        return True
    # A raw client reaches every key in its Redis; the other libraries only their own.
    return w == "redis-py" and r in ("home-grown", "cashews", "redis-py")


def _over_broad_reason(read: CachedRead, write: Write, extent: str) -> str:
    if extent != "all":
        return ""
    reasons = []
    templated = [
        h.label for h in (read.prefix.holes if read.prefix else ()) if h.kind is HoleKind.TEMPLATE
    ]
    if templated and write.kind == "decorator":
        # Only a decorated write has the changed value at hand (its arguments, its result);
        # an imperative flush of everything (seeding, an admin tool) is usually deliberate.
        fields = ", ".join("{" + t + "}" for t in templated)
        reasons.append(
            f"drops every {fields} of {read.qualname}, not only the one the write changed"
        )
    if (
        write.footprint is not None
        and read.footprint is not None
        and not write.footprint & read.footprint
    ):
        changed = ", ".join(sorted(write.footprint))
        reasons.append(f"the write changes only {changed}, which {read.qualname} never reads")
    return "; ".join(reasons)


def _staleness(read: CachedRead, coverage: list[Coverage]) -> Staleness:
    extents = {c.extent for c in coverage if c.read == read.id}
    if extents & {"all", "per-value"}:
        return Staleness(0.0, "invalidated by a write")
    if read.ttl is None:
        return Staleness(None, "no write invalidates it and its TTL is not static")
    if extents:
        return Staleness(read.ttl, "TTL: writes invalidate only some of its entries")
    return Staleness(read.ttl, "TTL: no write invalidates it")
