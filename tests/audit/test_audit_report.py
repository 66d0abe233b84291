"""The audit of myhibachi itself: no error-level finding, and docs/audit-report.md is current
(regenerate with `python3 dev.py audit`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_support import ROOT

from freshcache.audit import run_audit
from freshcache.audit.model import Severity
from freshcache.audit.render_md import render_markdown
from freshcache.cli import main

SERVICE = Path("src/myhibachi")
REPORT = ROOT / "docs" / "audit-report.md"


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the report shows paths relative to where the audit runs


@pytest.mark.usefixtures("in_repo")
def test_myhibachi_has_no_error_level_findings() -> None:
    result = run_audit([SERVICE], root=ROOT)
    errors = [f for f in result.findings if f.severity is Severity.ERROR]
    assert not errors, "\n".join(f"{f.rule} {f.location} {f.message}" for f in errors)
    # It does find the service's cached reads and the writes that invalidate them.
    assert {r.qualname for r in result.reads} >= {
        "BookingService.get_dashboard_stats",
        "BookingService.get_available_slots",
    }
    assert all(result.covering(r.id) for r in result.reads)


@pytest.mark.usefixtures("in_repo")
def test_committed_report_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    # Exactly what `python3 dev.py audit` runs, minus --output.
    assert main(["audit", str(SERVICE), "--format", "md"]) == 0
    generated = capsys.readouterr().out
    assert generated == render_markdown(run_audit([SERVICE], root=ROOT))
    assert REPORT.read_text(encoding="utf-8") == generated, (
        "docs/audit-report.md is out of date: run `python3 dev.py audit` and commit it"
    )
    assert str(ROOT) not in generated
