"""SARIF 2.1.0, so code-scanning UIs show the findings inline.

One run, the tool's rules as reportingDescriptors (stable ids FC###), one result per finding.
Locations are URIs relative to ``%SRCROOT%``, the audit root (the repository root when run
from there, which is how code-scanning uploads resolve them); live findings,
which are about the backend and not a line, carry no location.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from freshcache.audit.model import AuditResult, Finding, Severity
from freshcache.audit.rules import RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def _rule(rule_id: str) -> dict[str, Any]:
    rule = RULES[rule_id]
    return {
        "id": rule.id,
        "name": "".join(word.capitalize() for word in rule.name.split("-")),
        "shortDescription": {"text": rule.name},
        "fullDescription": {"text": rule.summary},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"tags": ["cache", "freshcache"]},
    }


def _fingerprint(f: Finding) -> str:
    # Stable across line moves: rule, file and the message (which names the function).
    where = f.location.file if f.location else ""
    return hashlib.sha256(f"{f.rule}|{where}|{f.message}".encode()).hexdigest()[:32]


def _result(f: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index[f.rule],
        "level": _LEVEL[f.severity],
        "message": {"text": f"{f.message}. Fix: {f.fix}."},
        "partialFingerprints": {"freshcacheAudit/v1": _fingerprint(f)},
    }
    if f.location is not None:
        out["locations"] = [
            {
                "physicalLocation": {
                    "artifactLocation": {
                        "uri": quote(f.location.file, safe="/"),
                        "uriBaseId": "%SRCROOT%",
                    },
                    "region": {"startLine": f.location.line, "startColumn": f.location.column},
                }
            }
        ]
    return out


def to_sarif(result: AuditResult, version: str = "0.1.0") -> dict[str, Any]:
    rule_ids = sorted(RULES)
    rule_index = {r: i for i, r in enumerate(rule_ids)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "freshcache-audit",
                        "semanticVersion": version,
                        "rules": [_rule(r) for r in rule_ids],
                    }
                },
                "artifacts": [
                    {"location": {"uri": quote(path, safe="/"), "uriBaseId": "%SRCROOT%"}}
                    for path in result.files
                ],
                "results": [_result(f, rule_index) for f in result.findings],
                "columnKind": "unicodeCodePoints",
            }
        ],
    }


def render_sarif(result: AuditResult) -> str:
    return json.dumps(to_sarif(result), indent=2, ensure_ascii=False) + "\n"
