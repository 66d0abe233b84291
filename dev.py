#!/usr/bin/env python3
"""Set up a local virtual environment and run the project: needs only Python 3.11+.

    python3 dev.py serve      # the myhibachi service on SQLite + memory:// with demo data
    python3 dev.py test       # lint, type-check and the whole test suite
    python3 dev.py bench      # benchmarks against cashews, aiocache, dogpile.cache (--quick)
    python3 dev.py audit      # regenerate docs/audit-report.md from the code

Everything installs into ./.venv; nothing outside this folder is touched.
Extra arguments after the command are passed through (to pytest, to the server, ...).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = {"serve": "service", "test": "dev,bench", "bench": "dev,bench", "audit": "dev"}


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure_venv(extras: str) -> None:
    """Create .venv and install the project with `extras`, once per pyproject change."""
    # Run by whatever python3 the machine has, which may predate the project's minimum.
    if sys.version_info < (3, 11):  # noqa: UP036
        sys.exit(f"Python 3.11+ is required, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras.replace(',', '-')}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv(EXTRAS[command])
    try:
        if command == "serve":
            _run(BIN / "myhibachi", "serve", "--demo", *rest)
        elif command == "test":
            lint = [p for p in ("src", "tests", "benchmarks", "dev.py") if (ROOT / p).exists()]
            _run(BIN / "ruff", "check", "--no-cache", *lint)
            _run(BIN / "ruff", "format", "--check", "--no-cache", *lint)
            _run(BIN / "mypy")
            _run(BIN / "lint-imports")  # the dependency rules in .importlinter
            _run(PY, "-m", "pytest", *rest)
        elif command == "bench":
            _run(PY, "benchmarks/run.py", *(rest or ["--quick"]))
        elif command == "audit":
            _run(
                BIN / "freshcache",
                "audit",
                "src/myhibachi",
                "--format",
                "md",
                "--output",
                "docs/audit-report.md",
                *rest,
            )
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
