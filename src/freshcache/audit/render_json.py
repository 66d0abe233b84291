"""The machine-readable report. Its schema is docs/audit-json-schema.json (``schema_version``
1): fields are only ever added; a rename or removal bumps the version."""

from __future__ import annotations

import json
from typing import Any

from freshcache.audit.model import (
    AuditResult,
    CachedRead,
    CheckStatus,
    Finding,
    InvalidationPattern,
    LiveReport,
    Location,
    Severity,
    SymText,
    Write,
)
from freshcache.audit.rules import RULES

SCHEMA_VERSION = 1


def _loc(loc: Location | None) -> dict[str, Any] | None:
    return None if loc is None else {"file": loc.file, "line": loc.line, "column": loc.column}


def _text(text: SymText | None) -> str | None:
    return None if text is None else text.display


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _read(result: AuditResult, read: CachedRead) -> dict[str, Any]:
    stale = result.staleness[read.id]
    return {
        "id": read.id,
        "function": read.qualname,
        "module": read.module,
        "location": _loc(read.location),
        "binding": read.binding,
        "async": read.is_async,
        "ttl": _number(read.ttl),
        "ttl_source": read.ttl_source.value,
        "ttl_expression": read.ttl_text or None,
        "key_prefix": _text(read.prefix),
        "key_prefix_expression": read.prefix_text or None,
        "key_pattern": _text(read.key),
        "exclude": list(read.exclude),
        "serializer": read.serializer,
        "signed": read.signing_key,
        "custom_key": read.custom_key,
        "reads_attributes": sorted(read.footprint) if read.footprint is not None else None,
        "api": read.api,
        "key_params": list(read.key_params) if read.key_params is not None else None,
        "dropped_from_key": [{"param": n, "reason": why} for n, why in read.dropped],
        "keyed_by_identity": list(read.by_identity),
        "store": read.store or None,
        "invalidated_by": [
            {"write": c.write, "pattern": c.pattern, "extent": c.extent}
            for c in result.covering(read.id)
        ],
        "worst_case_staleness": {"seconds": _number(stale.seconds), "reason": stale.reason},
    }


def _pattern(p: InvalidationPattern) -> dict[str, Any]:
    return {
        "pattern": _text(p.text),
        "expression": p.source_text,
        "source": p.source.value,
        "kind": p.kind,
        "problem": p.problem or None,
        "location": _loc(p.location),
    }


def _write(result: AuditResult, write: Write) -> dict[str, Any]:
    return {
        "id": write.id,
        "function": write.qualname,
        "module": write.module,
        "location": _loc(write.location),
        "kind": write.kind,
        "patterns": [_pattern(p) for p in write.patterns],
        "changes_attributes": sorted(write.footprint) if write.footprint is not None else None,
        "api": write.api,
        "store": write.store or None,
        "invalidates": [
            {"read": c.read, "pattern": c.pattern, "extent": c.extent}
            for c in result.covered_by(write.id)
        ],
        "over_broad": [
            {"read": o.read, "pattern": o.pattern, "reason": o.reason}
            for o in result.over_broad
            if o.write == write.id
        ],
        "commit": {"context": write.commit.name.lower(), "evidence": write.commit_evidence},
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "name": RULES[f.rule].name,
        "severity": f.severity.value,
        "location": _loc(f.location),
        "message": f.message,
        "fix": f.fix,
        "subject": f.subject or None,
    }


def _live(live: LiveReport | None) -> dict[str, Any] | None:
    if live is None:
        return None
    return {
        "url": live.url,
        "namespace": live.namespace,
        "sampled_keys": live.sampled_keys,
        "scan_complete": live.scan_complete,
        "orphans": {"count": live.orphan_count, "examples": list(live.orphans)},
        "unknown_prefix": {
            "count": live.unknown_prefix_count,
            "examples": list(live.unknown_prefix),
        },
        "memory_by_prefix": [
            {"prefix": p, "keys": n, "bytes": b} for p, n, b in live.memory_by_prefix
        ],
        "metrics_url": live.metrics_url,
        "hit_ratios": [{"prefix": p, "ratio": r, "lookups": n} for p, r, n in live.hit_ratios],
        "breaker_state": live.breaker_state,
        "pending_invalidations": live.pending_invalidations,
        "stale_hits": [
            {"prefix": p, "rate": r, "checks": c, "stale": n} for p, r, c, n in live.stale_hits
        ],
        "error": live.error or None,
    }


def to_dict(result: AuditResult) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "freshcache audit",
        "paths": list(result.paths),
        "config": {
            "ttl_min": _number(result.ttl_bounds[0]),
            "ttl_max": _number(result.ttl_bounds[1]),
            "hit_ratio_warn": result.hit_ratio_warn,
        },
        "summary": {
            "files": len(result.files),
            "unparsed_files": len(result.errors),
            "reads": len(result.reads),
            "unanalysed": len(result.unanalysed),
            "writes": len(result.writes),
            "findings": {s.value: result.count(s) for s in Severity},
            "checklist": {
                s.value: sum(1 for c in result.checklist if c.status is s) for s in CheckStatus
            },
        },
        "files": list(result.files),
        "reads": [_read(result, r) for r in result.reads],
        "writes": [_write(result, w) for w in result.writes],
        "findings": [_finding(f) for f in result.findings],
        "checklist": [
            {"id": c.id, "check": c.title, "status": c.status.value, "evidence": c.evidence}
            for c in result.checklist
        ],
        "live": _live(result.live),
        "apis": [
            {
                "api": a.api,
                "layout": a.layout,
                "defined_at": a.defined_at or None,
                "reads": a.reads,
                "writes": a.writes,
            }
            for a in result.apis
        ],
        "unanalysed": [
            {"what": u.what, "why": u.why, "kind": u.kind, "location": _loc(u.location)}
            for u in result.unanalysed
        ],
        "migration": [
            {
                "subject": m.subject,
                "kind": m.kind,
                "api": m.api,
                "location": _loc(m.location),
                "current": m.current,
                "replacement": m.replacement,
                "notes": m.notes or None,
            }
            for m in result.migration
        ],
    }


def render_json(result: AuditResult) -> str:
    return json.dumps(to_dict(result), indent=2, ensure_ascii=False) + "\n"
