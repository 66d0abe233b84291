"""Known answers: each fixture code base has exactly the findings planted in it.

expected.json holds the projection of the JSON report (tables, findings, checklist) and
expected.md the whole Markdown report; both are reviewed by hand when they change
(FRESHCACHE_UPDATE_SNAPSHOTS=1 rewrites them).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from audit_support import (
    FIXTURES,
    JSON_SCHEMA,
    SARIF_SCHEMA,
    compare_or_update,
    fixture_names,
    load_json,
    materialise,
    project,
)

from freshcache.audit import run_audit
from freshcache.audit.render_json import render_json, to_dict
from freshcache.audit.render_md import render_markdown
from freshcache.audit.render_sarif import to_sarif

#: The rule each fixture exists to plant (the clean one plants none).
PLANTED = {
    "clean": set(),
    "never_invalidated": {"FC101"},
    "dead_invalidation": {"FC102"},
    "ttl_problems": {"FC103", "FC104", "FC105"},
    "scan_pattern": {"FC106"},
    "glob_injection": {"FC107"},
    "shared_key_space": {"FC108", "FC112"},
    "session_param": {"FC109"},
    "unsigned_pickle": {"FC110"},
    "before_commit": {"FC111"},
    "over_broad": {"FC112"},
    "syntax_error": {"FC001"},
    "malformed": {"FC101", "FC113", "FC114"},
    "key_field_missing": {"FC101", "FC116", "FC118", "FC125"},
    "orm_attribute_write": {"FC106", "FC124"},
    # From a real code base: invalidations across modules and through aliases, value-typed
    # aliases, a metrics decorator named "cached", SQLAlchemy's table.insert() vs insert().
    "dogpile_across_modules": {"FC111"},
    "key_builders": {"FC101", "FC106", "FC116"},
    # From a real code base: cache-aside through get/set/delete helpers given the client.
    "cacheaside_helpers": {"FC101"},
    # One realistic code base per cache API, each with planted defects and correct decoys.
    "corpus_homegrown": {
        "FC103", "FC106", "FC111", "FC112", "FC116", "FC117", "FC118", "FC119", "FC120",
        "FC121", "FC122",
    },
    "corpus_cashews": {"FC101", "FC102", "FC106", "FC107", "FC109", "FC116"},
    "corpus_aiocache": {"FC101", "FC102", "FC103", "FC109", "FC116"},
    "corpus_fastapi_cache2": {"FC101", "FC102", "FC106", "FC109", "FC110", "FC124"},
    "corpus_dogpile": {"FC109", "FC110", "FC123"},
    "corpus_redispy": {"FC103", "FC106", "FC107", "FC110", "FC111", "FC116", "FC119"},
    "corpus_unrecognised": {"FC115"},
}  # fmt: skip


def test_every_fixture_is_listed() -> None:
    assert set(fixture_names()) == set(PLANTED)


@pytest.mark.parametrize("name", fixture_names())
def test_known_answers(name: str, tmp_path: Path) -> None:
    root = materialise(name, tmp_path)
    doc = to_dict(run_audit([root], root=root))
    assert {f["rule"] for f in doc["findings"]} == PLANTED[name]
    compare_or_update(FIXTURES / name / "expected.json", json.dumps(project(doc), indent=2) + "\n")


@pytest.mark.parametrize("name", fixture_names())
def test_markdown_snapshot(name: str, tmp_path: Path) -> None:
    root = materialise(name, tmp_path)
    compare_or_update(FIXTURES / name / "expected.md", render_markdown(run_audit([root], root)))


@pytest.mark.parametrize("name", fixture_names())
def test_json_matches_documented_schema(name: str, tmp_path: Path) -> None:
    root = materialise(name, tmp_path)
    doc = json.loads(render_json(run_audit([root], root)))
    jsonschema.Draft202012Validator(load_json(JSON_SCHEMA)).validate(doc)


@pytest.mark.parametrize("name", fixture_names())
def test_sarif_validates_against_sarif_2_1_0(name: str, tmp_path: Path) -> None:
    root = materialise(name, tmp_path)
    result = run_audit([root], root)
    sarif = to_sarif(result)
    schema = load_json(SARIF_SCHEMA)
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(sarif), key=str)
    assert not errors, errors[0]
    # One result per finding, each pointing at the finding's file and line.
    results = sarif["runs"][0]["results"]
    assert len(results) == len(result.findings)
    for finding, res in zip(result.findings, results, strict=True):
        assert res["ruleId"] == finding.rule
        assert finding.location is not None
        region = res["locations"][0]["physicalLocation"]
        assert region["artifactLocation"]["uri"] == finding.location.file
        assert region["region"]["startLine"] == finding.location.line


def test_the_report_is_the_same_wherever_the_tree_is(tmp_path: Path) -> None:
    a = materialise("clean", tmp_path / "a")
    b = materialise("clean", tmp_path / "b")
    assert render_markdown(run_audit([a], a)) == render_markdown(run_audit([b], b))
    assert render_json(run_audit([a], a)) == render_json(run_audit([b], b))
    assert str(tmp_path) not in render_json(run_audit([a], a))
