"""Shared helpers of the audit tests: fixture code bases, projections, schemas."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = HERE / "fixtures"
SARIF_SCHEMA = HERE / "sarif-schema-2.1.0.json"
JSON_SCHEMA = ROOT / "docs" / "audit-json-schema.json"
#: FRESHCACHE_UPDATE_SNAPSHOTS=1 rewrites expected.json / expected.md from the current output
#: (then review the diff: they are the known answers).
UPDATE = os.environ.get("FRESHCACHE_UPDATE_SNAPSHOTS") == "1"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def materialise(name: str, into: Path) -> Path:
    """Copy a fixture code base; ``*.py.txt`` become ``*.py`` (files that must not parse are
    kept under another name so that ruff and the editor leave the repository alone)."""
    target = into / name
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns("expected.*"))
    for path in target.rglob("*.py.txt"):
        path.rename(path.with_suffix(""))
    return target


def _where(loc: dict[str, Any] | None) -> str | None:
    return None if loc is None else f"{loc['file']}:{loc['line']}"


def _short(id_: str) -> str:
    return id_.split(":", 1)[1]


def project(doc: dict[str, Any]) -> dict[str, Any]:
    """The known answers of a fixture: what is read, written, found and checked."""
    return {
        "reads": [
            {
                "function": r["function"],
                "where": _where(r["location"]),
                "ttl": r["ttl"],
                "key_pattern": r["key_pattern"],
                "invalidated_by": sorted({_short(c["write"]) for c in r["invalidated_by"]}),
                "worst_case_staleness": r["worst_case_staleness"]["seconds"],
            }
            for r in doc["reads"]
        ],
        "writes": [
            {
                "function": w["function"],
                "where": _where(w["location"]),
                "patterns": [[p["pattern"] or p["expression"], p["kind"]] for p in w["patterns"]],
                "invalidates": sorted({_short(c["read"]) for c in w["invalidates"]}),
                "over_broad": sorted({_short(o["read"]) for o in w["over_broad"]}),
                "commit": w["commit"]["context"],
            }
            for w in doc["writes"]
        ],
        "findings": [
            {"rule": f["rule"], "severity": f["severity"], "where": _where(f["location"])}
            for f in doc["findings"]
        ],
        "checklist": {c["id"]: c["status"] for c in doc["checklist"]},
    }


def compare_or_update(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with FRESHCACHE_UPDATE_SNAPSHOTS=1, review"
    assert actual == path.read_text(encoding="utf-8"), f"{path} differs from the output"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
