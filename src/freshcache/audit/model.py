"""The audit's data: what the scanner extracts and what the analysis computes from it.

Plain frozen dataclasses, no behaviour beyond small derived properties, so that every renderer
(Markdown, JSON, SARIF) reads the same facts and none of them computes anything of its own.
"""

from __future__ import annotations

import dataclasses
import enum


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "note": 2}[self.value]


class HoleKind(enum.Enum):
    """What stands in a part of a key or pattern whose text is only known at run time."""

    TEMPLATE = "template"  # "{event_date}" filled and escaped by freshcache
    ESCAPED = "escaped"  # freshcache.escape(v) / a segment of freshcache.pattern(...)
    RAW = "raw"  # f"{v}", "a" + v, "...".format(v): not escaped (glob injection)
    UNKNOWN = "unknown"  # an expression the audit cannot resolve
    HASH = "hash"  # the {args_hash} of a key


@dataclasses.dataclass(frozen=True, slots=True)
class Hole:
    kind: HoleKind
    label: str  # the source expression, shown as {label}


Part = str | Hole


@dataclasses.dataclass(frozen=True, slots=True)
class SymText:
    """A key prefix, key or pattern: literal text and holes, in order."""

    parts: tuple[Part, ...]

    @property
    def display(self) -> str:
        return "".join(p if isinstance(p, str) else "{" + p.label + "}" for p in self.parts)

    @property
    def holes(self) -> tuple[Hole, ...]:
        return tuple(p for p in self.parts if isinstance(p, Hole))

    @property
    def is_literal(self) -> bool:
        return not self.holes

    def has(self, kind: HoleKind) -> bool:
        return any(h.kind is kind for h in self.holes)

    @classmethod
    def literal(cls, text: str) -> SymText:
        return cls((text,) if text else ())

    def __add__(self, other: SymText) -> SymText:
        parts: list[Part] = list(self.parts)
        for p in other.parts:
            if parts and isinstance(p, str) and isinstance(parts[-1], str):
                parts[-1] = parts[-1] + p  # keep literals merged: one canonical form
            else:
                parts.append(p)
        return SymText(tuple(parts))


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    file: str  # relative to the audit root, '/'-separated
    line: int
    column: int = 1

    @property
    def display(self) -> str:
        return f"{self.file}:{self.line}"


class TtlSource(enum.Enum):
    LITERAL = "literal"  # ttl=300 or ttl=5 * 60
    CONSTANT = "constant"  # ttl=STATS_TTL, a module constant the audit resolved
    MISSING = "missing"
    UNRESOLVED = "unresolved"  # ttl=settings.x: known only at run time


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    annotation: str  # source text, "" when absent


@dataclasses.dataclass(frozen=True, slots=True)
class CachedRead:
    id: str  # "module:qualname", unique in one audit
    module: str
    qualname: str
    location: Location
    binding: str  # "module" (@cached) or the receiver ("cache" for @cache.cached)
    is_async: bool
    ttl: float | None
    ttl_source: TtlSource
    ttl_text: str  # the source of the ttl argument, "" when missing
    prefix: SymText | None  # None: key_prefix could not be resolved
    prefix_text: str  # source of the key_prefix argument
    prefix_location: Location
    custom_key: bool  # key=... given: the key space is the callable's, not the template's
    params: tuple[Param, ...]
    exclude: tuple[str, ...]
    exclude_resolved: bool
    serializer: str | None  # None: not a literal
    signing_key: bool  # a signing_key argument other than None was given
    footprint: frozenset[str] | None  # attribute names the read uses; None: unknown

    #: what follows the prefix: ":{qualname}[:{version}]:{args_hash}", or the escaped result
    #: of key=... in place of the hash
    key_suffix: SymText = SymText(())
    #: the cache API that makes this read ("freshcache", "cashews", "home-grown", ...)
    api: str = "freshcache"
    #: the parameters whose values reach the key; None: every parameter but ``exclude`` and
    #: self/cls (freshcache's rule)
    key_params: tuple[str, ...] | None = None
    #: parameters the key ignores, with why ("the key builder keeps only str/int/...")
    dropped: tuple[tuple[str, str], ...] = ()
    #: parameters the key holds by identity (repr/str of an object: a memory address)
    by_identity: tuple[str, ...] = ()
    #: the return annotation's source text, "" when absent
    returns: str = ""
    #: which cache instance holds the entries ("" the API's shared default; "own:<id>" a
    #: decorator-private instance no other code can reach)
    store: str = ""
    #: what the decorator looked like in the source, for the migration plan
    source_text: str = ""

    @property
    def key(self) -> SymText | None:
        """The key template under the namespace; None when the prefix is not known."""
        return None if self.prefix is None else self.prefix + self.key_suffix


class PatternSource(enum.Enum):
    LITERAL = "literal"
    TEMPLATE = "template"  # "{result.event_date}" in a decorator: freshcache fills and escapes
    EXPRESSION = "expression"  # f-string, concatenation, constant
    PATTERN_CALL = "pattern()"  # freshcache.pattern(...)
    CALLABLE = "callable"  # returned by an invalidation callable
    UNRESOLVED = "unresolved"


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidationPattern:
    text: SymText | None  # None: could not be resolved
    source: PatternSource
    source_text: str
    location: Location
    kind: str  # "generation" | "entry" | "scan" | "malformed" | "unknown"
    problem: str = ""  # for "malformed": what classify() or Template() said


class CommitContext(enum.Enum):
    SELF = "commits first"
    UNIT_OF_WORK = "called inside a unit of work"
    BEFORE_CALLER_COMMIT = "caller commits after it"
    UNKNOWN = "cannot be told"
    NOT_APPLICABLE = "no database write seen"


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
    id: str  # "module:qualname" (+ "@line" for imperative calls)
    module: str
    qualname: str  # "<module>" for a module-level imperative call
    location: Location
    kind: str  # "decorator" | "imperative" | "entry" (func.invalidate(...))
    patterns: tuple[InvalidationPattern, ...]
    footprint: frozenset[str] | None  # attribute names the write changes; None: unknown/all
    commit: CommitContext
    commit_evidence: str
    api: str = "freshcache"
    store: str = ""
    source_text: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Coverage:
    """One write pattern that can match keys of one read."""

    read: str
    write: str
    pattern: str  # display text of the pattern
    extent: str  # "all": every key of the read; "per-value": the keys of the filled values;
    # "some": a literal subset (an exact key, a partial glob)


@dataclasses.dataclass(frozen=True, slots=True)
class OverBroad:
    write: str
    read: str
    pattern: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    rule: str  # "FC101"
    severity: Severity
    location: Location | None  # None: a live finding, about the backend rather than a line
    message: str
    fix: str
    subject: str = ""  # the read or write id it is about, for cross-reference


class CheckStatus(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NA = "N/A"


@dataclasses.dataclass(frozen=True, slots=True)
class CheckItem:
    id: str
    title: str
    status: CheckStatus
    evidence: str


@dataclasses.dataclass(frozen=True, slots=True)
class SourceError:
    location: Location
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Unanalysed:
    """Cache code the audit found and could not analyse: never counted as a pass."""

    location: Location
    what: str  # "@cache_response(...)", "cashews cache.set_lock(...)"
    why: str
    kind: str  # "read" | "write" | "call"


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationStep:
    """One read or write found, and the freshcache code that replaces it."""

    subject: str  # the read or write id
    location: Location
    api: str
    kind: str  # "read" | "write"
    current: str  # the decorator or call as written
    replacement: str  # the freshcache decorator, template or call
    notes: str  # what changes (keys, values, behaviour when Redis is down)


@dataclasses.dataclass(frozen=True, slots=True)
class ApiUse:
    """One cache API found in the code base: how it lays out keys and where it was seen."""

    api: str
    layout: str  # the key layout, in the audited code's own terms
    defined_at: str  # "src/core/cache.py" for a home-grown layer, "" for a library
    reads: int
    writes: int


@dataclasses.dataclass(frozen=True, slots=True)
class LiveReport:
    """What a live backend and (optionally) a metrics endpoint said."""

    url: str  # password removed
    namespace: str
    sampled_keys: int
    scan_complete: bool
    orphans: tuple[str, ...]  # keys without a TTL (entries, not generation tokens)
    orphan_count: int
    unknown_prefix: tuple[str, ...]  # keys under no prefix the code declares
    unknown_prefix_count: int
    memory_by_prefix: tuple[tuple[str, int, int], ...]  # (prefix, keys, bytes)
    metrics_url: str | None
    hit_ratios: tuple[tuple[str, float | None, int], ...]  # (prefix, ratio, lookups)
    breaker_state: str | None  # "closed" | "half-open" | "open"
    pending_invalidations: int | None
    error: str = ""  # the backend or the metrics endpoint could not be read
    #: Shadow reads (``verify_rate``): (prefix, stale rate or None, checks, stale hits).
    stale_hits: tuple[tuple[str, float | None, int, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Staleness:
    seconds: float | None  # worst case after a write; None: unknown (the TTL is not static)
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class AuditResult:
    """Everything a report shows, computed once; renderers only format it."""

    paths: tuple[str, ...]
    files: tuple[str, ...]
    ttl_bounds: tuple[float, float]
    hit_ratio_warn: float
    reads: tuple[CachedRead, ...]
    writes: tuple[Write, ...]
    coverage: tuple[Coverage, ...]
    over_broad: tuple[OverBroad, ...]
    staleness: dict[str, Staleness]
    findings: tuple[Finding, ...]
    checklist: tuple[CheckItem, ...]
    errors: tuple[SourceError, ...]
    live: LiveReport | None = None
    unanalysed: tuple[Unanalysed, ...] = ()
    migration: tuple[MigrationStep, ...] = ()
    apis: tuple[ApiUse, ...] = ()

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def covering(self, read_id: str) -> list[Coverage]:
        return [c for c in self.coverage if c.read == read_id]

    def covered_by(self, write_id: str) -> list[Coverage]:
        return [c for c in self.coverage if c.write == write_id]
