"""The report a person reads: summary, tables, findings, checklist (Markdown).

Deterministic by construction: no timestamps, paths relative to the audit root, every list
sorted or in source order, so a committed report can be checked for drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from freshcache.audit.model import (
    AuditResult,
    CachedRead,
    CheckStatus,
    Finding,
    Severity,
    Write,
)
from freshcache.audit.rules import RULES

_STATUS_MARK = {CheckStatus.PASS: "✅ PASS", CheckStatus.FAIL: "❌ FAIL", CheckStatus.NA: "➖ N/A"}
_SEVERITY_TITLE = {Severity.ERROR: "Errors", Severity.WARNING: "Warnings", Severity.NOTE: "Notes"}


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    # A backtick inside inline code would end it; these come from source, so guard anyway.
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value >= 60 and value % 60 == 0:
        return f"{value:g} s ({value / 60:g} min)"
    return f"{value:g} s"


def _short(id_: str) -> str:
    return id_.split(":", 1)[1]


def render_markdown(result: AuditResult, command: str = "freshcache audit") -> str:
    errors, warnings, notes = (result.count(s) for s in Severity)
    passed = sum(1 for c in result.checklist if c.status is CheckStatus.PASS)
    failed = sum(1 for c in result.checklist if c.status is CheckStatus.FAIL)
    na = sum(1 for c in result.checklist if c.status is CheckStatus.NA)
    unread = len(result.unanalysed)
    verdict = (
        f"❌ **NOT VERIFIED**: {unread} piece(s) of cache code could not be analysed, and "
        "nothing is claimed about them (see FC115)"
        if unread
        else "❌ **FAIL**: error-level findings below"
        if errors
        else "⚠️ **PASS with warnings**"
        if warnings
        else "✅ **PASS**: no error- or warning-level findings"
    )
    out: list[str] = [
        "# Cache Invalidation Audit Report",
        "",
        f"Computed by `{command} {' '.join(result.paths)}` from the code: every table, finding "
        "and checklist line below is derived from the source, none is asserted by hand.",
        "",
        f"**Status:** {verdict}  ",
        f"**Findings:** {errors} error(s), {warnings} warning(s), {notes} note(s)  ",
        f"**Checklist:** {passed} PASS, {failed} FAIL, {na} N/A",
        "",
        "## Summary",
        "",
        *_table(
            ["what", "count"],
            [
                ["Python files analysed", str(len(result.files))],
                ["files that could not be parsed", str(len(result.errors))],
                ["cached reads", str(len(result.reads))],
                ["cache code not analysed", str(len(result.unanalysed))],
                ["invalidating writes", _writes_summary(result.writes)],
                ["invalidation patterns", str(sum(len(w.patterns) for w in result.writes))],
                ["TTL bounds", f"{result.ttl_bounds[0]:g}-{result.ttl_bounds[1]:g} s"],
            ],
        ),
        "",
        *_layout_lines(result),
        "",
        "## Cached reads",
        "",
    ]
    if result.reads:
        out += _table(
            ["read", "where", "TTL", "key pattern", "invalidated by", "worst-case staleness"],
            (_read_row(result, r) for r in result.reads),
        )
    else:
        out.append("No `@cached` function found.")
    out += ["", "## Writes (invalidations)", ""]
    if result.writes:
        out += _table(
            ["write", "where", "pattern(s)", "invalidates", "probably need not", "commit"],
            (_write_row(result, w) for w in result.writes),
        )
        out += [
            "",
            "Pattern kinds: *generation* is O(1) (one token replaced), *entry* overwrites one "
            "key, *scan* walks the keyspace. Coverage: *all* keys of a read, *per-value* "
            "(the entries of the values the write fills in), or *some*.",
        ]
    else:
        out.append("No `@invalidate_cache` or `cache.invalidate(...)` found.")
    out += ["", "## Findings", ""]
    if not result.findings:
        out.append("None.")
    for severity in Severity:
        group = [f for f in result.findings if f.severity is severity]
        if group:
            out += [f"### {_SEVERITY_TITLE[severity]} ({len(group)})", ""]
            out += [_finding_line(f) for f in group]
            out.append("")
    if out[-1] != "":
        out.append("")
    if result.unanalysed:
        out += ["## Not analysed", ""]
        out += _table(
            ["what", "where", "why"],
            ([u.what, u.location.display, u.why] for u in result.unanalysed),
        )
        out.append("")
    foreign = [m for m in result.migration if m.api != "freshcache"]
    if foreign:
        out += ["## Moving to freshcache", ""]
        out += _table(
            ["", "where", "today", "with freshcache", "what changes"],
            (
                [m.kind, m.location.display, f"{m.api}: {_code(m.current)}",
                 _code(m.replacement), m.notes or "-"]
                for m in foreign
            ),
        )  # fmt: skip
        out.append("")
    out += ["## Verification checklist", ""]
    out += _table(
        ["check", "status", "evidence"],
        ([c.title, _STATUS_MARK[c.status], c.evidence] for c in result.checklist),
    )
    if result.live is not None:
        out += ["", *_live_section(result)]
    used = sorted({f.rule for f in result.findings})
    if used:
        out += ["", "## Rules", ""]
        out += _table(
            ["rule", "name", "severity", "what it means"],
            ([r, RULES[r].name, RULES[r].severity.value, RULES[r].summary] for r in used),
        )
    out.append("")
    return "\n".join(out)


def _layout_lines(result: AuditResult) -> list[str]:
    """The key layout of the audited code's own cache APIs (not freshcache's, unless it is one)."""
    if not result.apis:
        return ["Key layout: no cache API found."]
    if len(result.apis) == 1:
        api = result.apis[0]
        where = f" (defined in {api.defined_at})" if api.defined_at else ""
        return [
            f"Key layout ({api.api}{where}): `{api.layout}`; the key patterns below are relative "
            "to the namespace."
        ]
    lines = ["Key layouts (the key patterns below are relative to each API's namespace):", ""]
    for api in result.apis:
        where = f", defined in {api.defined_at}" if api.defined_at else ""
        lines.append(
            f"- **{api.api}** ({api.reads} read(s), {api.writes} write(s){where}): `{api.layout}`"
        )
    return lines


def _writes_summary(writes: Sequence[Write]) -> str:
    kinds = {k: sum(1 for w in writes if w.kind == k) for k in ("decorator", "imperative", "entry")}
    shown = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    return f"{len(writes)}" + (f" ({shown})" if shown else "")


def _read_row(result: AuditResult, read: CachedRead) -> list[str]:
    by: dict[str, list[str]] = {}
    for c in result.covering(read.id):
        by.setdefault(_short(c.write), []).append(f"{_code(c.pattern)} ({c.extent})")
    invalidated = "; ".join(f"{w}: {', '.join(p)}" for w, p in sorted(by.items())) or "**none**"
    stale = result.staleness[read.id]
    staleness = (
        "0 s after a write"
        if stale.seconds == 0
        else f"**{_seconds(stale.seconds)}** ({stale.reason})"
    )
    ttl = _seconds(read.ttl) if read.ttl is not None else f"**{read.ttl_source.value}**"
    if read.ttl_text and read.ttl is not None and read.ttl_source.value == "constant":
        ttl += f" (`{read.ttl_text}`)"
    key = _code(read.key.display) if read.key else f"unresolved: {_code(read.prefix_text)}"
    return [_code(read.qualname), read.location.display, ttl, key, invalidated, staleness]


def _write_row(result: AuditResult, write: Write) -> list[str]:
    patterns = ", ".join(
        f"{_code(p.text.display if p.text else p.source_text)} ({p.kind})" for p in write.patterns
    )
    extents: dict[str, set[str]] = {}
    for c in result.covered_by(write.id):
        extents.setdefault(_short(c.read), set()).add(c.extent)
    order = ("all", "per-value", "some")
    invalidates = (
        ", ".join(
            f"{_code(r)} ({', '.join(e for e in order if e in ex)})"
            for r, ex in sorted(extents.items())
        )
        or "**nothing**"
    )
    broad = [o for o in result.over_broad if o.write == write.id]
    need_not = "; ".join(f"{_code(_short(o.read))} via {_code(o.pattern)}" for o in broad) or "-"
    label = _code(write.qualname) + ("" if write.kind == "decorator" else f" ({write.kind})")
    return [
        label,
        write.location.display,
        patterns or "-",
        invalidates,
        need_not,
        write.commit.value,
    ]


def _finding_line(f: Finding) -> str:
    where = f" `{f.location.display}`" if f.location else ""
    message, fix = f.message.rstrip("."), f.fix.rstrip(".")
    return f"- **{f.rule} {RULES[f.rule].name}**{where}: {message}. *Fix:* {fix}."


def _live_section(result: AuditResult) -> list[str]:
    live = result.live
    assert live is not None
    out = [
        "## Live backend",
        "",
        f"Backend `{live.url}`, namespace `{live.namespace}`: {live.sampled_keys} key(s) "
        + (
            "scanned (complete)."
            if live.scan_complete
            else "sampled (the scan stopped at the limit)."
        ),
        "",
    ]
    if live.error:
        out += [f"**Error:** {live.error}", ""]
    if live.memory_by_prefix:
        out += _table(
            ["prefix", "keys", "bytes"],
            ([_code(p), str(n), str(b)] for p, n, b in live.memory_by_prefix),
        )
        out.append("")
    if live.metrics_url:
        out += [f"Metrics from `{live.metrics_url}`:", ""]
        out += _table(
            ["prefix", "hit ratio", "lookups"],
            ([_code(p), "-" if r is None else f"{r:.1%}", str(n)] for p, r, n in live.hit_ratios),
        )
        pending = live.pending_invalidations
        out += [
            "",
            f"Breaker: {live.breaker_state or 'not reported'}; pending invalidations: "
            f"{'not reported' if pending is None else pending}.",
            "",
        ]
        if live.stale_hits:
            out += ["Measured stale hits (shadow reads):", ""]
            out += _table(
                ["prefix", "checks", "stale", "rate"],
                (
                    [_code(p), str(c), str(n), "-" if r is None else f"{r:.2%}"]
                    for p, r, c, n in live.stale_hits
                ),
            )
        else:
            out.append(
                "No shadow-read counters: run the service with `verify_rate` (e.g. "
                "`?verify_rate=0.001` in its cache URL) to measure stale hits."
            )
    return out
