"""Findings: each rule has an id, a default severity, and a one-line fix.

Rule ids are stable (the JSON and SARIF outputs and suppressions refer to them); a new rule
gets a new id, a retired one is never reused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from freshcache.audit import globmatch
from freshcache.audit.analysis import Tables
from freshcache.audit.config import (
    REQUEST_NAMES,
    REQUEST_TYPES,
    SESSION_NAMES,
    SESSION_TYPES,
    AuditConfig,
)
from freshcache.audit.model import (
    CachedRead,
    CommitContext,
    Finding,
    Hole,
    HoleKind,
    LiveReport,
    Location,
    Param,
    Severity,
    TtlSource,
)
from freshcache.audit.scanner import ScanResult


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    severity: Severity
    summary: str  # one line, for SARIF rule metadata and the report's legend


RULES: dict[str, Rule] = {
    r.id: r
    for r in [
        Rule("FC001", "unreadable-source", Severity.ERROR,
             "A file could not be read or parsed, so it was not audited."),
        Rule("FC101", "read-never-invalidated", Severity.WARNING,
             "A cached read that no write invalidates is stale for up to its TTL after writes."),
        Rule("FC102", "dead-invalidation", Severity.WARNING,
             "An invalidation pattern matches no cached read (a typo or dead code)."),
        Rule("FC103", "missing-ttl", Severity.ERROR,
             "A cached read without a TTL keeps its entries until they are invalidated."),
        Rule("FC104", "non-literal-ttl", Severity.WARNING,
             "A TTL known only at run time cannot be checked."),
        Rule("FC105", "ttl-out-of-bounds", Severity.WARNING,
             "A TTL outside the configured bounds."),
        Rule("FC106", "scan-pattern", Severity.WARNING,
             "A pattern that is not segment-aligned falls back to SCAN, O(size of keyspace)."),
        Rule("FC107", "glob-injection", Severity.ERROR,
             "A value is put into a pattern unescaped: '*', '?', '[' or ':' in it widen it."),
        Rule("FC108", "shared-key-space", Severity.ERROR,
             "Two cached functions can produce the same key and read each other's values."),
        Rule("FC109", "unkeyable-parameter", Severity.ERROR,
             "A cached function keys on a database session or a request object."),
        Rule("FC110", "unsigned-pickle", Severity.ERROR,
             "Pickled values without a signing key run code for anyone who can write the cache."),
        Rule("FC111", "invalidation-before-commit", Severity.ERROR,
             "An invalidation runs before the transaction that makes the write commits."),
        Rule("FC112", "over-broad-invalidation", Severity.NOTE,
             "A write invalidates reads whose data it does not change."),
        Rule("FC113", "malformed-key-or-pattern", Severity.ERROR,
             "freshcache would refuse this key prefix or pattern at run time."),
        Rule("FC114", "unresolved-expression", Severity.WARNING,
             "A key prefix, pattern or exclude= the audit cannot resolve statically."),
        Rule("FC115", "unanalysed-cache-code", Severity.ERROR,
             "Cache code the audit found and could not analyse: nothing is verified about it."),
        Rule("FC116", "argument-not-in-key", Severity.ERROR,
             "An argument that changes the result does not reach the key: calls with "
             "different values share one entry."),
        Rule("FC117", "value-does-not-round-trip", Severity.ERROR,
             "The serializer cannot bring the value back as it was: a hit returns something "
             "else than a miss."),
        Rule("FC118", "hit-test-misses", Severity.WARNING,
             "The hit test treats some stored values as misses: those calls always recompute."),
        Rule("FC119", "security-state-fails-open", Severity.ERROR,
             "Security-relevant state kept only in the cache passes its check when Redis is "
             "down."),
        Rule("FC120", "service-without-cache", Severity.ERROR,
             "Objects whose cached methods find the cache on self are built without one: "
             "uncached reads, invalidations that do nothing."),
        Rule("FC121", "swallowed-invalidation-error", Severity.ERROR,
             "A failed invalidation is logged and forgotten: stale entries stay until the TTL."),
        Rule("FC122", "cache-never-reconnects", Severity.WARNING,
             "A failed connect disables the cache for the life of the process."),
        Rule("FC123", "process-local-invalidation", Severity.WARNING,
             "An invalidation reaches only this process; other workers keep serving old "
             "entries."),
        Rule("FC124", "orm-write-not-invalidated", Severity.WARNING,
             "A function writes rows of a table a cached read selects from, and invalidates "
             "none of its entries."),
        Rule("FC125", "key-names-missing-argument", Severity.WARNING,
             "A key list names an argument the function does not have: it is the same "
             "(missing) value in every key, most often a misspelling."),
        Rule("FC201", "orphan-keys", Severity.WARNING,
             "Live: entries without a TTL never expire."),
        Rule("FC202", "unknown-prefix-keys", Severity.WARNING,
             "Live: keys under no key prefix the code declares (old versions or other apps)."),
        Rule("FC203", "low-hit-ratio", Severity.WARNING,
             "Live: a prefix's hit ratio is below the alert level."),
        Rule("FC204", "breaker-not-closed", Severity.WARNING,
             "Live: the circuit breaker is open or half-open: the cache is being bypassed."),
        Rule("FC205", "pending-invalidations", Severity.WARNING,
             "Live: invalidations wait to be replayed; reads bypass the cache until then."),
        Rule("FC206", "live-unavailable", Severity.ERROR,
             "Live: the backend or the metrics endpoint could not be read."),
        Rule("FC207", "measured-stale-hits", Severity.ERROR,
             "Live: shadow reads found cached values that differ from a fresh computation "
             "while nothing invalidated them: a write path lacks an invalidation."),
    ]
}  # fmt: skip


def finding(
    rule_id: str, where: Location | None, message: str, fix: str, subject: str = ""
) -> Finding:
    rule = RULES[rule_id]
    return Finding(rule_id, rule.severity, where, message, fix, subject)


def _seconds(value: float) -> str:
    return f"{value:g} s"


def static_findings(scan: ScanResult, tables: Tables, config: AuditConfig) -> list[Finding]:
    found = [
        *_source_errors(scan),
        *_unanalysed(scan),
        *scan.adapter_findings,
        *_key_rules(tables),
        *_orm_rules(scan, tables),
        *_value_rules(tables, scan),
        *_read_rules(tables, config),
        *_write_rules(tables),
        *_shared_key_space(tables),
        *(
            finding(
                "FC113",
                where,
                f"{read_id.split(':', 1)[1]}: {problem}",
                "use literal segments separated by ':', with {name} fields that are parameters",
                read_id,
            )
            for read_id, where, problem in scan.prefix_problems
        ),
    ]
    return sort_findings(found)


def sort_findings(found: list[Finding]) -> list[Finding]:
    def key(f: Finding) -> tuple[str, int, int, str, str]:
        loc = f.location
        return (loc.file if loc else "", loc.line if loc else 0, f.severity.rank, f.rule, f.message)

    unique: dict[tuple[str, int, int, str, str], Finding] = {key(f): f for f in found}
    return [unique[k] for k in sorted(unique)]


def _source_errors(scan: ScanResult) -> Iterator[Finding]:
    for error in scan.errors:
        yield finding(
            "FC001",
            error.location,
            f"{error.message}; its cached reads and invalidations are not in this report",
            "fix the file so that Python can parse it",
        )


def _orm_rules(scan: ScanResult, tables: Tables) -> Iterator[Finding]:
    from freshcache.audit.orm import orm_findings

    yield from orm_findings(scan, tables)


def _unanalysed(scan: ScanResult) -> Iterator[Finding]:
    for item in scan.unanalysed:
        yield finding(
            "FC115",
            item.location,
            f"{item.what}: {item.why}",
            "declare it under [[tool.freshcache.audit.wrappers]] (kind, ttl, key, key_args) so "
            "it is analysed, or move it to freshcache's @cached / @invalidate_cache",
        )


def keyed_params(read: CachedRead) -> list[Param]:
    """The parameters whose values reach the read's key."""
    if read.key_params is not None:
        return [p for p in read.params if p.name in read.key_params]
    implicit = {"self", "cls"} if "." in read.qualname else set()
    return [p for p in read.params if p.name not in read.exclude and p.name not in implicit]


def _key_rules(tables: Tables) -> Iterator[Finding]:
    for read in tables.reads:
        if read.custom_key:
            continue
        for name, why in read.dropped:
            param = next((p for p in read.params if p.name == name), None)
            shown = f"{name} ({param.annotation})" if param and param.annotation else name
            yield finding(
                "FC116",
                read.location,
                f"{read.qualname}: {shown} does not reach the key ({why}): calls with different "
                f"{name} share one entry and return each other's results",
                f"freshcache keys on every argument ({_migration_read(read)}); name {{{name}}} "
                "in key_prefix to invalidate per value",
                read.id,
            )
        for name in read.by_identity:
            param = next((p for p in read.params if p.name == name), None)
            if param is not None and _is_unkeyable(param):
                continue  # FC109 says it
            yield finding(
                "FC109",
                read.location,
                f"{read.qualname} keys on {name!r} by its str()/repr(): an object's default repr "
                "holds its memory address, so a call is a hit only when an address is reused",
                f"key on the values it stands for, or add exclude=({name!r},) in freshcache",
                read.id,
            )


_ORM_RESULTS = {"Result", "MappingResult", "ScalarResult", "CursorResult", "Row", "Query",
                "ChunkedIteratorResult", "AsyncResult"}  # fmt: skip
_STRINGLY = {"date", "datetime", "time", "Decimal", "UUID", "timedelta"}


def _value_rules(tables: Tables, scan: ScanResult) -> Iterator[Finding]:
    from freshcache.audit.adapters.base import annotation_names

    models = scan_models(scan)
    for read in tables.reads:
        if (
            not read.returns
            or read.serializer in (None, "pickle", "unknown")
            or (read.serializer or "").startswith("memory")
        ):
            continue
        names = annotation_names(read.returns)
        default_str = "default=str" in (read.serializer or "")
        orm = sorted(names & _ORM_RESULTS)
        if orm:
            encoded = "its str()" if default_str else "{} (or a TypeError)"
            yield finding(
                "FC117",
                read.location,
                f"{read.qualname} returns a SQLAlchemy {orm[0]}, which {read.serializer} encodes "
                f"as {encoded}: a hit returns that instead of the rows",
                "return plain data (result.mappings().all() into dicts, or pydantic models): "
                "freshcache's JSON serializer rebuilds pydantic models from the return annotation",
                read.id,
            )
            continue
        model = sorted(names & models)
        if model and (default_str or (read.serializer or "").startswith("json (jsonable")):
            how = (
                "its str() (a repr with an address)" if default_str else "a dict of its attributes"
            )
            yield finding(
                "FC117",
                read.location,
                f"{read.qualname} returns the ORM model {model[0]}, which {read.serializer} "
                f"encodes as {how}: a hit returns that instead of a {model[0]}",
                "return a pydantic model (from_attributes=True): freshcache rebuilds it on a hit",
                read.id,
            )
            continue
        lost = sorted(names & _STRINGLY)
        if lost and default_str:
            yield finding(
                "FC117",
                read.location,
                f"{read.qualname} returns {', '.join(lost)} values, which {read.serializer} "
                "turns into str: a miss returns a " + lost[0] + ", a hit a str",
                "freshcache's JSON serializer round-trips date, datetime, Decimal and UUID "
                "through the return annotation",
                read.id,
            )


def scan_models(scan: ScanResult) -> set[str]:
    """Classes of the audited code that are ORM models (a declarative base among the bases)."""
    import ast as _ast

    bases = {"Base", "DeclarativeBase", "Model", "SQLModel", "AbstractBase", "BaseModelORM"}
    found: set[str] = set()
    for mod in scan.modules.values():
        for node in mod.tree.body:  # models are module-level classes
            if isinstance(node, _ast.ClassDef):
                names = {_ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                tabled = any(k.arg == "table" for k in node.keywords)
                if names & bases and (tabled or "SQLModel" not in names):
                    found.add(node.name)
    return found


def _migration_read(read: CachedRead) -> str:
    from freshcache.audit.migration import read_replacement

    return read_replacement(read)


def _is_unkeyable(param: Param) -> bool:
    names = {part.strip("'\" []|") for part in param.annotation.replace("[", " ").split()}
    last = {n.rsplit(".", 1)[-1] for n in names}
    return bool(last & (SESSION_TYPES | REQUEST_TYPES)) or (
        not param.annotation and param.name in SESSION_NAMES | REQUEST_NAMES
    )


def _read_rules(tables: Tables, config: AuditConfig) -> Iterator[Finding]:
    for read in tables.reads:
        where = read.location
        name = read.qualname
        if read.ttl is not None and read.ttl <= 0:
            yield finding(
                "FC103",
                where,
                f"{name}: ttl={read.ttl_text or f'{read.ttl:g}'} "
                + (
                    "is refused at import: @cached raises ValueError for a TTL that is not positive"
                    if read.api == "freshcache"
                    else "stores entries that never expire (or are never stored)"
                ),
                "pass ttl=<seconds> greater than 0: the longest staleness you accept",
                read.id,
            )
        elif read.ttl_source is TtlSource.MISSING:
            yield finding(
                "FC103",
                where,
                f"{name} has no TTL ({read.ttl_text or 'ttl not given'})",
                "pass ttl=<seconds>: the longest staleness you accept for this read",
                read.id,
            )
        elif read.ttl_source is TtlSource.UNRESOLVED:
            yield finding(
                "FC104",
                where,
                f"{name}: ttl={read.ttl_text} is known only at run time",
                "use a literal or a module constant so the TTL can be audited",
                read.id,
            )
        elif read.ttl is not None and not config.ttl_min <= read.ttl <= config.ttl_max:
            yield finding(
                "FC105",
                where,
                f"{name}: TTL {_seconds(read.ttl)} is outside {config.ttl_min:g}-"
                f"{config.ttl_max:g} s",
                f"choose a TTL between {config.ttl_min:g} and {config.ttl_max:g} s, or change "
                "[tool.freshcache.audit] ttl_min/ttl_max",
                read.id,
            )
        if read.prefix is None:
            yield finding(
                "FC114",
                read.prefix_location,
                f"{name}: key_prefix={read.prefix_text} cannot be resolved statically",
                "use a string literal or a module constant (templates {param} are fine)",
                read.id,
            )
        if not read.exclude_resolved:
            yield finding(
                "FC114",
                where,
                f"{name}: exclude= cannot be resolved statically",
                "pass a tuple of parameter names",
                read.id,
            )
        for param in _unkeyable(read):
            yield finding(
                "FC109",
                where,
                f"{name} keys on parameter {param.name!r}"
                + (f" ({param.annotation})" if param.annotation else "")
                + ", a session or request: every call misses, or the call fails",
                f"add exclude=({param.name!r},) (or stop passing it to the cached function)",
                read.id,
            )
        if read.serializer == "pickle" and not read.signing_key:
            yield finding(
                "FC110",
                where,
                f"{name} uses serializer='pickle' without signing_key",
                "use the default JSON serializer, or pass signing_key= (HMAC)",
                read.id,
            )
        covered = [c for c in tables.coverage if c.read == read.id]
        if read.key is not None and not covered:
            ttl = _seconds(read.ttl) if read.ttl is not None else "an unknown TTL"
            yield finding(
                "FC101",
                where,
                f"no write invalidates {name} ({read.key.display}): stale for up to {ttl}"
                + (f" ({read.api})" if read.api != "freshcache" else ""),
                "add @invalidate_cache('"
                + _prefix_pattern(read)
                + "') to the writes that change its data (or accept the TTL)",
                read.id,
            )


def prefix_pattern(read: CachedRead) -> str:
    return _prefix_pattern(read)


def _prefix_pattern(read: CachedRead) -> str:
    prefix = read.prefix.display if read.prefix else "prefix"
    return prefix + ":*"


def _unkeyable(read: CachedRead) -> Iterator[Param]:
    for param in keyed_params(read):
        if read.custom_key:
            continue  # with key=..., the callable decides what goes into the key
        names = {part.strip("'\" []|") for part in param.annotation.replace("[", " ").split()}
        last = {n.rsplit(".", 1)[-1] for n in names}
        typed = bool(last & (SESSION_TYPES | REQUEST_TYPES))
        untyped = not param.annotation and param.name in SESSION_NAMES | REQUEST_NAMES
        if typed or untyped:
            yield param


def _write_rules(tables: Tables) -> Iterator[Finding]:
    known = sorted({r.prefix.display for r in tables.reads if r.prefix is not None})
    for write in tables.writes:
        name = write.qualname
        for pattern in write.patterns:
            where = pattern.location
            shown = pattern.text.display if pattern.text else pattern.source_text
            if pattern.kind == "unknown":
                yield finding(
                    "FC114",
                    where,
                    f"{name}: the pattern expression `{pattern.source_text}` cannot be "
                    "resolved statically",
                    "use a literal, a template '{param}' or freshcache.pattern(...)",
                    write.id,
                )
                continue
            if pattern.kind == "malformed":
                yield finding(
                    "FC113",
                    where,
                    f"{name}: pattern {shown!r}: {pattern.problem}",
                    "use ':'-separated non-empty segments; template fields must be parameters "
                    "or result",
                    write.id,
                )
                continue
            assert pattern.text is not None
            raw = [h.label for h in pattern.text.holes if h.kind is HoleKind.RAW]
            if raw and pattern.kind != "entry":  # DEL of one exact key is no glob
                yield finding(
                    "FC107",
                    where,
                    f"{name}: {', '.join(raw)} is put into pattern {shown!r} unescaped",
                    "build it with freshcache.pattern(...) or freshcache.escape(value), or use a "
                    "template field '{name}' in the decorator",
                    write.id,
                )
            if pattern.kind == "scan" and write.api != "freshcache":
                yield finding(
                    "FC106",
                    where,
                    f"{name}: {write.api} deletes {shown!r} by walking the keyspace (SCAN/KEYS + "
                    "DEL): O(size of the keyspace), not atomic, and a reader that missed before "
                    "the DEL can SET its old value after it",
                    f"freshcache: @invalidate_cache({_aligned(shown)!r}) replaces one generation "
                    "token, O(1), and a late SET of an old value is refused",
                    write.id,
                )
            elif pattern.kind == "scan":
                yield finding(
                    "FC106",
                    where,
                    f"{name}: pattern {shown!r} is not segment-aligned: SCAN of the keyspace",
                    "use whole segments with '*' only as the last one (e.g. 'booking:stats:*')",
                    write.id,
                )
            hits = [c for c in tables.coverage if c.write == write.id and c.pattern == shown]
            # A raw client's DEL is as often data as cache (a counter, a lock): not dead code.
            raw_delete = write.api == "redis-py" and pattern.kind == "entry"
            if not hits and write.kind != "entry" and not raw_delete:
                yield finding(
                    "FC102",
                    where,
                    f"{name}: pattern {shown!r} matches no cached read",
                    "fix the pattern to one of the key prefixes ("
                    + (", ".join(known) or "none declared")
                    + ") or remove it",
                    write.id,
                )
        # A raw client's DEL before a commit matters when it drops a cached read's entry;
        # otherwise it is the application's own state (a counter, a lock), not a cache.
        covers = any(c.write == write.id for c in tables.coverage)
        if write.commit is CommitContext.BEFORE_CALLER_COMMIT and (
            write.api != "redis-py" or covers
        ):
            yield finding(
                "FC111",
                write.location,
                f"{name} invalidates before the commit: {write.commit_evidence}",
                "run it inside `async with cache.deferred():` or unit_of_work(session), or "
                "commit in the function that invalidates",
                write.id,
            )
    reads = {r.id: r for r in tables.reads}
    for item in tables.over_broad:
        write = next(w for w in tables.writes if w.id == item.write)
        read = reads[item.read]
        yield finding(
            "FC112",
            write.location,
            f"{write.qualname}: {item.pattern!r} also invalidates {read.qualname}: {item.reason}",
            _narrow_fix(read),
            write.id,
        )


def _aligned(shown: str) -> str:
    """A pattern in freshcache's segment-aligned form: "booking*" -> "booking:*"."""
    if shown.endswith("*") and not shown.endswith(":*") and shown != "*":
        return shown[:-1].rstrip(":") + ":*"
    return shown


def _narrow_fix(read: CachedRead) -> str:
    """A narrower pattern for ``read``: its prefix with the template fields taken from the
    write (``result.<field>`` or the argument of that name)."""
    if read.prefix is None:
        return "narrow the pattern to the prefixes whose data the write changes"
    args: list[str] = []
    for segment in _segments(read):
        if isinstance(segment, str):
            args.append(repr(segment))
        else:
            args.append(f"result.{segment.label}")
    if not any(a.startswith("result.") for a in args):
        return "narrow the pattern to the prefixes whose data the write changes"
    return (
        f"invalidate only the changed value: freshcache.pattern({', '.join(args)}, '*') "
        "(or a template field naming the argument that holds it)"
    )


def _segments(read: CachedRead) -> list[str | Hole]:
    assert read.prefix is not None
    out: list[str | Hole] = []
    for part in read.prefix.parts:
        if isinstance(part, str):
            pieces = part.split(":")
            out.extend(p for p in pieces if p)
        else:
            out.append(part)
    return out


def _shared_key_space(tables: Tables) -> Iterator[Finding]:
    # Keys that hash the function's name (fastapi-cache2, aiocache) cannot meet another
    # function's; hand-written cache-aside keys are shared on purpose as often as not.
    reads = [
        r
        for r in tables.reads
        if r.key is not None
        and not r.key.has(HoleKind.UNKNOWN)
        and r.api not in ("fastapi-cache2", "aiocache")
        and not r.api.endswith("cache-aside")
    ]
    for i, a in enumerate(reads):
        for b in reads[i + 1 :]:
            if a.store != b.store or family(a.api) != family(b.api):
                continue
            assert a.key is not None
            assert b.key is not None
            if globmatch.intersects(globmatch.compile_key(a.key), globmatch.compile_key(b.key)):
                yield finding(
                    "FC108",
                    b.location,
                    f"{b.qualname} ({b.key.display}) shares keys with {a.qualname} "
                    f"({a.location.display})",
                    "give one of them its own key_prefix",
                    b.id,
                )


def family(api: str) -> str:
    """The key space an API writes to: a service's cache-aside calls share its layer's."""
    return api.split()[0]


def live_findings(live: LiveReport, config: AuditConfig) -> list[Finding]:
    """Findings about the backend: no file location, so SARIF shows them at the run level."""
    found: list[Finding] = []
    if live.error:
        found.append(
            finding("FC206", None, live.error, "check the URL, the network and the credentials")
        )
    if live.orphan_count:
        found.append(
            finding(
                "FC201",
                None,
                f"{live.orphan_count} key(s) without TTL in namespace {live.namespace!r}, e.g. "
                + ", ".join(live.orphans[:3]),
                "find the writer that stores without expiry; delete them or give them a TTL",
            )
        )
    if live.unknown_prefix_count:
        found.append(
            finding(
                "FC202",
                None,
                f"{live.unknown_prefix_count} key(s) under no declared key prefix, e.g. "
                + ", ".join(live.unknown_prefix[:3]),
                "they are left by old code versions or another application: let them expire or "
                "delete them with `freshcache invalidate`",
            )
        )
    for prefix, ratio, lookups in live.hit_ratios:
        if ratio is not None and ratio < config.hit_ratio_warn:
            found.append(
                finding(
                    "FC203",
                    None,
                    f"hit ratio of {prefix!r} is {ratio:.0%} over {lookups} lookups (alert "
                    f"below {config.hit_ratio_warn:.0%})",
                    "the TTL is too short or the prefix is invalidated too often (see FC112)",
                )
            )
    for prefix, rate, checks, stale in live.stale_hits:
        if stale:
            found.append(
                finding(
                    "FC207",
                    None,
                    f"{stale} of {checks} shadow-read checks of {prefix!r} found a stale hit "
                    f"({rate:.2%}): the cached value differed from a fresh computation and no "
                    "invalidation had reached it",
                    "find the write that changes this data and add an @invalidate_cache "
                    "reaching this prefix (or, if the function is not deterministic, exclude "
                    "it from verify_rate)",
                )
            )
    if live.breaker_state not in (None, "closed"):
        found.append(
            finding(
                "FC204",
                None,
                f"the circuit breaker is {live.breaker_state}",
                "check the backend's health; reads bypass the cache meanwhile",
            )
        )
    if live.pending_invalidations:
        found.append(
            finding(
                "FC205",
                None,
                f"{live.pending_invalidations} invalidation(s) wait to be replayed",
                "the backend was unreachable; they are replayed when it answers again",
            )
        )
    return found
