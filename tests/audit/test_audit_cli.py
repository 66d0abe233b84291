"""The command line: exit statuses for CI, formats, and one-line errors (never a traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from audit_support import materialise

from freshcache.cli import CLI_HINT, main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("fixture", "fail_on", "status"),
    [
        ("clean", "error", 0),
        ("clean", "warning", 0),
        ("never_invalidated", "error", 0),  # a warning only
        ("never_invalidated", "warning", 1),
        ("glob_injection", "error", 1),
        ("glob_injection", "never", 0),
        ("over_broad", "warning", 0),  # notes never fail
    ],
)
def test_exit_status_follows_fail_on(
    fixture: str, fail_on: str, status: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = materialise(fixture, tmp_path)
    code, out, _err = run(["audit", str(root), "--fail-on", fail_on, "--format", "json"], capsys)
    assert code == status
    assert json.loads(out)["schema_version"] == 1


def test_default_fail_on_is_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = materialise("session_param", tmp_path)
    code, out, err = run(["audit", str(root)], capsys)
    assert code == 1
    assert out.startswith("# Cache Invalidation Audit Report")
    assert "3 error(s)" in err


def test_summary_counts_the_places_not_analysed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = materialise("corpus_unrecognised", tmp_path)
    code, out, err = run(["audit", str(root), "--format", "json", "--fail-on", "never"], capsys)
    assert code == 0
    unanalysed = len(json.loads(out)["unanalysed"])
    assert unanalysed > 0
    assert f"write(s); {unanalysed} not analysed; " in err
    clean = materialise("clean", tmp_path)
    _code, _out, err = run(["audit", str(clean), "--format", "json"], capsys)
    assert "write(s); 0 not analysed; " in err


def test_output_file_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = materialise("clean", tmp_path)
    for fmt in ("md", "json", "sarif"):
        target = tmp_path / "out" / f"report.{fmt}"
        code, out, err = run(["audit", str(root), "-f", fmt, "-o", str(target)], capsys)
        assert code == 0
        assert out == ""
        assert f"-> {target}" in err
        text = target.read_text(encoding="utf-8")
        if fmt == "sarif":
            assert json.loads(text)["version"] == "2.1.0"
        elif fmt == "json":
            assert json.loads(text)["summary"]["findings"] == {"error": 0, "warning": 0, "note": 0}


def test_syntax_error_is_a_finding_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = materialise("syntax_error", tmp_path)
    code, out, err = run(["audit", str(root), "--format", "json"], capsys)
    assert code == 1
    assert "Traceback" not in err
    doc = json.loads(out)
    assert [f["rule"] for f in doc["findings"]] == ["FC001"]
    assert doc["reads"][0]["function"] == "get_stats"  # the good file is still audited


def test_ttl_bounds_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = materialise("clean", tmp_path)
    code, out, _ = run(["audit", str(root), "--ttl-max", "120", "-f", "json"], capsys)
    assert code == 0  # FC105 is a warning
    rules = [f["rule"] for f in json.loads(out)["findings"]]
    assert rules == ["FC105"]  # the 300 s stats read


def test_bounds_from_pyproject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = materialise("clean", tmp_path)
    (root / "pyproject.toml").write_text("[tool.freshcache.audit]\nttl_min = 120\n")
    code, out, _ = run(["audit", str(root), "-f", "json"], capsys)
    assert [f["rule"] for f in json.loads(out)["findings"]] == ["FC105"]  # the 60 s read
    (root / "pyproject.toml").write_text("[tool.freshcache.audit]\nttl_min = 'x'\n")
    code, _, err = run(["audit", str(root)], capsys)
    assert code == 2
    assert_one_line_error(err, "ttl_min must be a number")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["audit", "no/such/dir"], ["no/such/dir", "no such file"]),
        (["audit", ".", "--metrics", "http://127.0.0.1:1/metrics"], ["--metrics needs --live"]),
        (["audit", ".", "--ttl-min", "10", "--ttl-max", "5"], ["ttl_min <= ttl_max"]),
        (["stats", "ftp://example"], ["not a Redis URL"]),
        (["stats", "memory://"], ["memory://", "cannot be reached"]),
        (["stats", "redis://127.0.0.1:1/0", "--timeout", "0.5"], ["cannot use the Redis server"]),
        (["stats", "http://127.0.0.1:1/metrics", "--timeout", "0.5"], ["cannot reach"]),
        (["keys", "redis://127.0.0.1:1/0", "booking:[x"], ["malformed pattern"]),
        (["keys", "redis://127.0.0.1:1/0", "a::b"], ["malformed pattern", "empty segment"]),
        (["keys", "redis://:secret@127.0.0.1:1/0", "--timeout", "0.5"], ["***"]),
        (["invalidate", "redis://127.0.0.1:1/0", "*"], ["broad pattern", "--yes"]),
        (["invalidate", "redis://127.0.0.1:1/0", "booking:stats:*", "--timeout", "0.2"],
         ["cannot reach the cache backend"]),
        (["invalidate", "nope://x", "booking:stats:*"], ["not a Redis URL"]),
        (["inspect", "memory://", "booking:stats:f:0"], ["memory://"]),
    ],
)  # fmt: skip
def test_clear_one_line_errors(
    argv: list[str],
    needles: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    code, _out, err = run(argv, capsys)
    assert code == 2
    assert_one_line_error(err, *needles)
    assert "secret" not in err


def test_missing_cli_extra_gives_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "typer", None)  # import typer -> ImportError
    code, _out, err = run(["audit", "."], capsys)
    assert code == 2
    assert err.strip() == CLI_HINT


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("audit", "stats", "keys", "invalidate", "inspect"):
        assert command in out


def test_folder_without_python_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("nothing to audit")
    code, _out, err = run(["audit", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err, "no Python files")


def test_undecodable_file_is_a_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "latin.py").write_bytes(b"x = '\xff\xfe'\n")
    code, out, err = run(["audit", str(tmp_path), "-f", "json"], capsys)
    assert code == 1
    assert "Traceback" not in err
    (finding,) = json.loads(out)["findings"]
    assert finding["rule"] == "FC001"
    assert finding["location"]["file"] == "latin.py"


def test_pre_commit_hook_definition() -> None:
    yaml = pytest.importorskip("yaml")
    from audit_support import ROOT

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "freshcache-audit"
    assert hook["entry"] == "freshcache audit"  # the console script of pyproject.toml
    assert hook["pass_filenames"] is False  # the audit needs the whole code base
    assert "--fail-on" in hook["args"]
    assert 'freshcache = "freshcache.cli:main"' in (ROOT / "pyproject.toml").read_text()
