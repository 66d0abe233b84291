"""The verification checklist of the original audit, each line computed from the tables.

A line is PASS or FAIL only when the evidence decides it; N/A says what would decide it (no
cached read to check, or a live backend that was not given).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from freshcache.audit.analysis import Tables
from freshcache.audit.config import AuditConfig
from freshcache.audit.model import (
    CheckItem,
    CheckStatus,
    CommitContext,
    Finding,
    LiveReport,
    SourceError,
    Unanalysed,
)

PASS, FAIL, NA = CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.NA


def _names(items: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _short(read_or_write_id: str) -> str:
    return read_or_write_id.split(":", 1)[1]


def build_checklist(
    tables: Tables,
    findings: Sequence[Finding],
    errors: Sequence[SourceError],
    config: AuditConfig,
    files: int,
    live: LiveReport | None,
    unanalysed: Sequence[Unanalysed] = (),
) -> list[CheckItem]:
    def rule_hits(*rules: str) -> list[Finding]:
        return [f for f in findings if f.rule in rules]

    reads, writes = tables.reads, tables.writes
    missed_reads = [u for u in unanalysed if u.kind == "read"]
    missed_writes = [u for u in unanalysed if u.kind == "write"]
    missed_calls = [u for u in unanalysed if u.kind == "call"]

    def coverage(kind: str) -> str:
        """ "5 of 7 cached reads analysed; 2 not: @x at app/x.py:12": on every line."""
        if kind == "files":
            return f"{files - len(errors)} of {files} files parsed"
        if kind == "all":
            return f"{coverage('reads')}; {coverage('writes')}"
        found, missed, noun = (
            (len(reads), missed_reads, "cached reads")
            if kind == "reads"
            else (len(writes), missed_writes + missed_calls, "writes")
        )
        text = f"{found} of {found + len(missed)} {noun} analysed"
        if missed:
            text += f"; {len(missed)} not: " + _names(
                [f"{u.what} at {u.location.display}" for u in missed], 2
            )
        return text

    def item(
        id_: str, title: str, decide: Callable[[], tuple[CheckStatus, str]], kind: str = "reads"
    ) -> CheckItem:
        status, evidence = decide()
        partial = (
            (missed_reads if kind == "reads" else missed_writes + missed_calls)
            if kind
            in (
                "reads",
                "writes",
            )
            else []
        )
        if status is PASS and partial:
            # Never a pass over code that was not read: what was read passed, the rest is open.
            status = NA
            evidence = "not verified for all: " + evidence
        return CheckItem(id_, title, status, f"{coverage(kind)}. {evidence}")

    patterns = [p for w in writes for p in w.patterns]

    def reads_invalidated() -> tuple[CheckStatus, str]:
        if not reads:
            return NA, "no @cached function found"
        lines = []
        missing = []
        for read in reads:
            by = sorted({_short(c.write) for c in tables.coverage if c.read == read.id})
            if by:
                lines.append(f"{read.qualname} <- {_names(by, 3)}")
            else:
                missing.append(read.qualname)
        if missing:
            return FAIL, f"{len(missing)} of {len(reads)} never invalidated: {_names(missing)}"
        return PASS, f"{len(reads)} of {len(reads)} invalidated: " + "; ".join(lines)

    def no_dead() -> tuple[CheckStatus, str]:
        if not patterns:
            return NA, "no invalidation found"
        dead = rule_hits("FC102")
        if dead:
            return FAIL, f"{len(dead)} of {len(patterns)} patterns match no cached read"
        unknown = len(rule_hits("FC114"))
        extra = f" ({unknown} could not be resolved)" if unknown else ""
        return PASS, f"every resolved pattern ({len(patterns)} in all) matches a read{extra}"

    def keys_consistent() -> tuple[CheckStatus, str]:
        if not reads:
            return NA, "no @cached function found"
        bad = rule_hits("FC108", "FC113")
        prefixes = sorted({r.prefix.display for r in reads if r.prefix is not None})
        unresolved = [r.qualname for r in reads if r.prefix is None]
        if bad or unresolved:
            reasons = [f.message for f in bad] + [f"{n}: prefix unresolved" for n in unresolved]
            return FAIL, _names(reasons, 2)
        return PASS, f"{len(reads)} key templates, all valid and disjoint: " + ", ".join(prefixes)

    def ttls() -> tuple[CheckStatus, str]:
        if not reads:
            return NA, "no @cached function found"
        bad = rule_hits("FC103", "FC104", "FC105")
        bounds = f"bounds {config.ttl_min:g}-{config.ttl_max:g} s"
        if bad:
            return FAIL, f"{len(bad)} problem(s), {bounds}: " + _names([f.message for f in bad], 2)
        values = [f"{r.qualname} {r.ttl:g} s" for r in reads if r.ttl is not None]
        return PASS, f"{_names(values, 6)}; {bounds}"

    def aligned() -> tuple[CheckStatus, str]:
        if not patterns:
            return NA, "no invalidation found"
        kinds = {
            k: sum(1 for p in patterns if p.kind == k)
            for k in ("generation", "entry", "scan", "malformed", "unknown")
        }
        shown = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
        status = FAIL if kinds["scan"] or kinds["malformed"] else PASS
        return status, f"{len(patterns)} patterns: {shown}"

    def escaped() -> tuple[CheckStatus, str]:
        if not patterns:
            return NA, "no invalidation found"
        bad = rule_hits("FC107")
        if bad:
            return FAIL, _names([f"{f.location.display if f.location else ''}" for f in bad])
        filled = sum(1 for p in patterns if p.text is not None and not p.text.is_literal)
        if not filled:
            return PASS, f"all {len(patterns)} pattern(s) are literal: no run-time value"
        return (
            PASS,
            f"{filled} pattern(s) with run-time values, all through templates, "
            "freshcache.pattern() or escape()",
        )

    def expire() -> tuple[CheckStatus, str]:
        if not reads:
            return NA, "no @cached function found"
        missing = [f.message for f in rule_hits("FC103")]
        if missing:
            return FAIL, _names(missing, 2)
        unknown = [r.qualname for r in reads if r.ttl is None]
        if unknown:
            return NA, f"TTL known only at run time for {_names(unknown)}"
        return PASS, f"all {len(reads)} cached reads have a TTL, so every entry expires"

    def keyable() -> tuple[CheckStatus, str]:
        if not reads:
            return NA, "no @cached function found"
        bad = rule_hits("FC109")
        if bad:
            return FAIL, _names([f.message.split(",")[0] for f in bad], 2)
        return PASS, f"no session or request parameter in the keys of {len(reads)} reads"

    def pickle_signed() -> tuple[CheckStatus, str]:
        pickled = [r for r in reads if r.serializer == "pickle"]
        if not pickled:
            return NA, "no read uses serializer='pickle'"
        bad = rule_hits("FC110")
        if bad:
            return FAIL, _names([f.message for f in bad], 2)
        return PASS, f"{len(pickled)} pickled read(s), all with signing_key"

    def after_commit() -> tuple[CheckStatus, str]:
        if not writes:
            return NA, "no invalidation found"
        flagged = {f.subject for f in rule_hits("FC111")}
        bad = [w for w in writes if w.id in flagged]
        if bad:
            return FAIL, "; ".join(f"{w.qualname}: {w.commit_evidence}" for w in bad[:2])
        unknown = [w for w in writes if w.commit is CommitContext.UNKNOWN]
        if unknown:
            return NA, "cannot be told for " + "; ".join(
                f"{w.qualname} ({w.commit_evidence})" for w in unknown[:2]
            )
        counted = sorted({w.commit.value for w in writes})
        return PASS, f"{len(writes)} invalidation(s): " + ", ".join(counted)

    def parsed() -> tuple[CheckStatus, str]:
        if errors:
            return FAIL, _names([f"{e.location.display}: {e.message}" for e in errors], 2)
        return PASS, f"{files} file(s) parsed"

    def understood() -> tuple[CheckStatus, str]:
        if unanalysed:
            return FAIL, f"{len(unanalysed)} not understood: " + _names(
                [f"{u.what} at {u.location.display} ({u.why.split(';')[0]})" for u in unanalysed],
                3,
            )
        apis = sorted({r.api for r in reads} | {w.api for w in writes})
        if not apis:
            return NA, "no cache code found"
        return PASS, "every cache call found was analysed: " + ", ".join(apis)

    def by_rule(
        rules: tuple[str, ...], ok: str, none: str = ""
    ) -> Callable[[], tuple[CheckStatus, str]]:
        def decide() -> tuple[CheckStatus, str]:
            if not reads and not writes:
                return NA, none or "no cached read found"
            bad = rule_hits(*rules)
            if bad:
                return FAIL, f"{len(bad)} finding(s): " + _names(
                    [
                        f"{f.message.split(':')[0]} ({f.location.display if f.location else ''})"
                        for f in bad
                    ],
                    2,
                )
            return PASS, ok

        return decide

    items = [
        item("cache-code-understood", "All cache code found was analysed (no unrecognised "
             "wrapper or call)", understood, "all"),
        item("reads-invalidated", "All @cached methods have matching @invalidate_cache",
             reads_invalidated),
        item("no-dead-invalidations", "Every invalidation pattern matches a cached read",
             no_dead, "writes"),
        item("keys-consistent", "Cache key patterns are consistent (valid, no shared key space)",
             keys_consistent),
        item("ttl-appropriate", "TTL values are appropriate (static, within bounds)", ttls),
        item("patterns-aligned", "Wildcard patterns work correctly (segment-aligned, no SCAN)",
             aligned, "writes"),
        item("values-escaped", "Values in patterns are escaped (no glob injection)", escaped,
             "writes"),
        item("keys-expire", "No cache leaks: every cached read has a TTL", expire),
        item("args-keyable", "No cached function keys on a session or request", keyable),
        item("pickle-signed", "Pickled values are signed", pickle_signed),
        item("after-commit", "Invalidation happens after successful operations (after commit)",
             after_commit, "writes"),
        item("keys-complete", "Every argument that changes the result reaches the key, by value",
             by_rule(("FC116", "FC109", "FC125"),
                     "no argument dropped from a key or keyed by identity")),
        item("values-round-trip", "Cached values come back as they went in (serializer, hit test)",
             by_rule(("FC117", "FC118", "FC110"), "no value the serializer or hit test loses")),
        item("fails-safe", "Redis down: no invalidation lost, no security check passed, no "
             "object silently uncached",
             by_rule(("FC119", "FC120", "FC121", "FC122", "FC123"),
                     "no swallowed invalidation, fail-open security state or uncached object"),
             "writes"),
        item("sources-parsed", "Every source file was analysed", parsed, "files"),
    ]  # fmt: skip
    items.extend(live_checklist(live, config))
    return items


def live_checklist(live: LiveReport | None, config: AuditConfig) -> list[CheckItem]:
    no_live = "needs --live REDIS_URL"
    no_metrics = "needs --live REDIS_URL --metrics METRICS_URL"
    threshold = f"{config.hit_ratio_warn:.0%}"
    titles = {
        "no-orphans": "No orphaned keys in the live namespace (every entry has a TTL)",
        "known-prefixes": "Every live key is under a declared key prefix",
        "hit-ratio": f"Hit ratio at least {threshold} for every prefix",
        "backend-healthy": "Cache handles the backend being unavailable (breaker closed, "
        "no pending invalidations)",
    }
    if live is None:
        return [
            CheckItem("no-orphans", titles["no-orphans"], NA, no_live),
            CheckItem("known-prefixes", titles["known-prefixes"], NA, no_live),
            CheckItem("hit-ratio", titles["hit-ratio"], NA, no_metrics),
            CheckItem("backend-healthy", titles["backend-healthy"], NA, no_metrics),
        ]
    sampled = f"{live.sampled_keys} key(s) sampled" + (
        "" if live.scan_complete else " (a sample: the scan stopped at the limit)"
    )
    items: list[CheckItem] = []
    if live.error and not live.sampled_keys:
        items.append(CheckItem("no-orphans", titles["no-orphans"], FAIL, live.error))
        items.append(CheckItem("known-prefixes", titles["known-prefixes"], FAIL, live.error))
    else:
        orphans = live.orphan_count
        items.append(
            CheckItem(
                "no-orphans",
                titles["no-orphans"],
                FAIL if orphans else PASS,
                f"{orphans} without TTL, e.g. {_names(list(live.orphans), 3)}; {sampled}"
                if orphans
                else f"none without TTL; {sampled}",
            )
        )
        unknown = live.unknown_prefix_count
        items.append(
            CheckItem(
                "known-prefixes",
                titles["known-prefixes"],
                FAIL if unknown else PASS,
                f"{unknown} under no declared prefix, e.g. {_names(list(live.unknown_prefix), 3)}"
                if unknown
                else f"all under declared prefixes; {sampled}",
            )
        )
    if live.metrics_url is None:
        items.append(CheckItem("hit-ratio", titles["hit-ratio"], NA, no_metrics))
        items.append(CheckItem("backend-healthy", titles["backend-healthy"], NA, no_metrics))
        return items
    measured = [(p, r, n) for p, r, n in live.hit_ratios if r is not None]
    if not measured:
        items.append(CheckItem("hit-ratio", titles["hit-ratio"], NA, "no lookups counted yet"))
    else:
        low = [f"{p} {r:.0%} of {n}" for p, r, n in measured if r < config.hit_ratio_warn]
        shown = _names([f"{p} {r:.0%}" for p, r, _n in measured], 6)
        items.append(
            CheckItem(
                "hit-ratio",
                titles["hit-ratio"],
                FAIL if low else PASS,
                ("below: " + _names(low)) if low else shown,
            )
        )
    if live.breaker_state is None and live.pending_invalidations is None:
        items.append(
            CheckItem(
                "backend-healthy",
                titles["backend-healthy"],
                NA,
                "metrics have neither "
                "freshcache_breaker_state nor freshcache_pending_invalidations",
            )
        )
    else:
        ok = live.breaker_state in (None, "closed") and not live.pending_invalidations
        items.append(
            CheckItem(
                "backend-healthy",
                titles["backend-healthy"],
                PASS if ok else FAIL,
                f"breaker {live.breaker_state or 'not reported'}, "
                f"{live.pending_invalidations or 0} pending invalidation(s)",
            )
        )
    return items
