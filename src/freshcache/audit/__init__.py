"""freshcache audit: the cache-invalidation audit report, computed from the code.

    result = run_audit([Path("src/myhibachi")], root=Path.cwd())
    print(render_markdown(result))

This package imports nothing that talks to a server; only ``freshcache.audit.live`` does, and
only when a live check is asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from freshcache.audit.analysis import build_tables
from freshcache.audit.checklist import build_checklist
from freshcache.audit.config import AuditConfig, ConfigError, load_config
from freshcache.audit.migration import migration_steps
from freshcache.audit.model import ApiUse, AuditResult, LiveReport, Severity
from freshcache.audit.resolve import forget_walks
from freshcache.audit.rules import family, static_findings
from freshcache.audit.scanner import AuditInputError, display_path, scan

__all__ = [
    "AuditConfig",
    "AuditInputError",
    "AuditResult",
    "ConfigError",
    "exit_status",
    "load_config",
    "run_audit",
    "with_live",
]

FAIL_ON = ("error", "warning", "never")


def run_audit(paths: Sequence[Path], root: Path, config: AuditConfig | None = None) -> AuditResult:
    """Scan ``paths`` (files or folders) and compute the report. Paths are shown relative to
    ``root``, so the report is the same wherever the repository is checked out."""
    config = config or AuditConfig()
    forget_walks()
    try:
        return _run(paths, root, config)
    finally:
        forget_walks()  # the memo holds every tree: never keep it past the audit


def _run(paths: Sequence[Path], root: Path, config: AuditConfig) -> AuditResult:
    result = scan(paths, root, config)
    tables = build_tables(result)
    findings = static_findings(result, tables, config)
    checklist = build_checklist(
        tables, findings, result.errors, config, len(result.files), None, result.unanalysed
    )
    apis = tuple(
        ApiUse(
            api,
            layout,
            defined_at,
            sum(1 for r in tables.reads if family(r.api) == family(api)),
            sum(1 for w in tables.writes if family(w.api) == family(api)),
        )
        for api, (layout, defined_at) in sorted(result.apis.items())
    )
    return AuditResult(
        unanalysed=tuple(result.unanalysed),
        migration=migration_steps(tables.reads, tables.writes),
        apis=apis,
        paths=tuple(display_path(p.resolve(), root, p.resolve().parent) or "." for p in paths),
        files=tuple(result.files),
        ttl_bounds=(config.ttl_min, config.ttl_max),
        hit_ratio_warn=config.hit_ratio_warn,
        reads=tables.reads,
        writes=tables.writes,
        coverage=tables.coverage,
        over_broad=tables.over_broad,
        staleness=tables.staleness,
        findings=tuple(findings),
        checklist=tuple(checklist),
        errors=tuple(result.errors),
    )


def with_live(result: AuditResult, live: LiveReport, config: AuditConfig) -> AuditResult:
    """The static result with the live checks added (findings and checklist lines)."""
    from freshcache.audit.checklist import live_checklist
    from freshcache.audit.rules import live_findings, sort_findings

    static_items = [c for c in result.checklist if c.id not in _LIVE_IDS]
    return dataclasses.replace(
        result,
        live=live,
        findings=tuple(sort_findings([*result.findings, *live_findings(live, config)])),
        checklist=(*static_items, *live_checklist(live, config)),
    )


_LIVE_IDS = frozenset({"no-orphans", "known-prefixes", "hit-ratio", "backend-healthy"})


def exit_status(result: AuditResult, fail_on: str) -> int:
    """1 when a finding at or above ``fail_on`` exists, else 0 (for CI and pre-commit)."""
    if fail_on == "never":
        return 0
    worst = {Severity.ERROR} if fail_on == "error" else {Severity.ERROR, Severity.WARNING}
    return 1 if any(f.severity in worst for f in result.findings) else 0
