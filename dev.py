#!/usr/bin/env python3
"""Set up a local virtual environment and run the project: needs only Python 3.11+.

    python3 dev.py serve      # the myhibachi service on SQLite + memory:// with demo data
    python3 dev.py test       # lint, type-check and the whole test suite
    python3 dev.py bench      # benchmarks against cashews, aiocache, dogpile.cache (--quick)
    python3 dev.py audit      # regenerate docs/audit-report.md from the code

Everything installs into ./.venv (both distributions, editable: the library from ./ and the
service from distributions/myhibachi); nothing outside this folder is touched.
Extra arguments after the command are passed through (to pytest, to the server, ...).

`test` runs, in order: ruff, mypy, import-linter (when contracts are configured), pytest, then
the release checks: both distributions built (sdist, then the wheel from it) and `twine check`,
the freshcache wheel installed into a fresh venv (it must install freshcache and nothing else),
the myhibachi wheel into another (`myhibachi --help` and its app import with what it declares),
`mkdocs build --strict`, and `promtool check rules` + `promtool test rules` on ops/prometheus
(without promtool the step is skipped with a note, except under CI=true, where it fails).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
SERVICE = ROOT / "distributions" / "myhibachi"
# The library's extras each command needs; the service is installed next to it every time.
EXTRAS = {"serve": "", "test": "dev,bench", "bench": "dev,bench", "audit": "dev"}
# What decides whether .venv must be reinstalled.
INSTALL_INPUTS = (ROOT / "pyproject.toml", SERVICE / "pyproject.toml", SERVICE / "hatch_build.py")
RULES = ROOT / "ops" / "prometheus"


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
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in INSTALL_INPUTS) + extras.encode())
    stamp = VENV / f".installed-{extras.replace(',', '-') or 'service'}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    library = f".[{extras}]" if extras else "."
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # One resolution for both: the service pins the library's version, satisfied by ./ itself.
    _run(PY, "-m", "pip", "install", "--quiet", "-e", library, "-e", SERVICE)
    stamp.write_text(digest.hexdigest())


def check_distributions() -> None:
    """Build both distributions, `twine check` them, install the library's wheel alone, and
    the service's wheel (with that library wheel) into a venv of its own."""
    with tempfile.TemporaryDirectory(prefix="freshcache-dist-") as tmp:
        out = Path(tmp) / "dist"
        for project in (ROOT, SERVICE):
            # --no-isolation: hatchling is in .venv (dev extra); no download per build. The
            # default of `build` is kept: the sdist first, then the wheel built from it.
            _run(PY, "-m", "build", "--no-isolation", "--outdir", out, project)
        _run(BIN / "twine", "check", "--strict", *sorted(out.iterdir()))
        (wheel,) = out.glob("freshcache-*.whl")
        (service_wheel,) = out.glob("myhibachi-*.whl")
        fresh = Path(tmp) / "fresh-venv"
        venv.EnvBuilder(with_pip=False).create(fresh)
        fresh_py = fresh / BIN.name / PY.name
        # pip of .venv installs into the fresh venv (--python): no pip bootstrap per run.
        # --no-compile: the listing shows the wheel's files, not the .pyc pip would add.
        _run(PY, "-m", "pip", "--python", fresh_py, "install", "--quiet", "--no-compile", wheel)
        # -I: neither the script's folder nor the working directory is on sys.path, so
        # `import myhibachi` can only succeed if the wheel installed it.
        check = ROOT / "distributions" / "check_library_wheel.py"
        _run(fresh_py, "-I", check, service_wheel)
        # The service's wheel with the library's wheel just built (named, so that no index can
        # supply another freshcache), in a venv of its own: its command and its app import
        # with nothing but what it declares.
        service = Path(tmp) / "service-venv"
        venv.EnvBuilder(with_pip=False).create(service)
        service_py = service / BIN.name / PY.name
        _run(PY, "-m", "pip", "--python", service_py, "install", "--quiet", "--no-compile",
             wheel, service_wheel)  # fmt: skip
        _run(service / BIN.name / "myhibachi", "--help")
        _run(service_py, "-I", "-c", "import myhibachi.api.app")


def check_alert_rules() -> None:
    """promtool on the shipped alerting rules: syntax and the rule unit tests."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise SystemExit("promtool is missing (Debian package `prometheus`); CI=true needs it")
        print("note: promtool not found (Debian: apt-get install prometheus); skipping the rules")
        return
    _run(promtool, "check", "rules", *sorted(RULES.glob("*.rules.yml")))
    _run(promtool, "test", "rules", *sorted(RULES.glob("*.test.yml")))


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
            lint = [
                p
                # docs: its Python only (ruff would reformat the pages' illustrative snippets)
                for p in (
                    "src",
                    "tests",
                    "benchmarks",
                    "distributions",
                    "docs/examples",
                    "docs/hooks.py",
                    "dev.py",
                )
                if (ROOT / p).exists()
            ]
            _run(BIN / "ruff", "check", "--no-cache", *lint)
            _run(BIN / "ruff", "format", "--check", "--no-cache", *lint)
            _run(BIN / "mypy")
            _run(BIN / "lint-imports")  # the dependency rules in .importlinter
            _run(PY, "-m", "pytest", *rest)
            if rest:  # a targeted run (`dev.py test -k outage`): the suite's part only
                print("note: arguments given; skipping the distribution, docs and rules checks")
                return 0
            check_distributions()
            with tempfile.TemporaryDirectory(prefix="freshcache-site-") as site:
                # --strict: a warning (a broken link or anchor, a missing page) fails the build.
                os.environ["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's banner, not ours
                _run(BIN / "mkdocs", "build", "--strict", "--quiet", "--site-dir", site)
            check_alert_rules()
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
