"""How the command is started and what its help says."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_support import run


def test_python_dash_m_freshcache_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "freshcache", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for command in ("audit", "stats", "keys", "invalidate", "inspect"):
        assert command in done.stdout


@pytest.mark.parametrize("command", ["audit", "stats", "keys", "invalidate", "inspect"])
def test_flag_help_is_clean(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "<bool>" not in out
    assert "--json" in out  # every command can print JSON
    assert "╭" not in out  # plain help: no box that cuts option help at 80 columns


def test_help_keeps_patterns_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["invalidate", "--help"], capsys)
    assert code == 0
    assert "'booking:stats:*'" in out


def test_cluster_urls_are_named_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("keys", "invalidate", "inspect", "stats"):
        code, out, _ = run([command, "--help"], capsys)
        assert code == 0
        assert "redis+cluster://" in out, command


def test_audit_json_flag_is_format_json(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    code, _out, err = run(["audit", ".", "--json", "--format", "sarif"], capsys)
    assert code == 2
    assert "pick one" in err
