"""The two distributions' metadata, read from their sources (the builds themselves, twine check
and the fresh-venv install of the library's wheel run in `python3 dev.py test`)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import freshcache

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "distributions" / "myhibachi"


def pyproject(path: Path) -> dict[str, object]:
    return tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))


def service_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "myhibachi_hatch_build", SERVICE / "hatch_build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_version_has_one_source() -> None:
    project = pyproject(ROOT)["project"]
    assert isinstance(project, dict)
    assert "version" not in project
    assert project["dynamic"] == ["version"]
    assert pyproject(ROOT)["tool"]["hatch"]["version"] == {"path": "src/freshcache/__init__.py"}
    # The editable install's metadata was built from that line.
    assert metadata.version("freshcache") == freshcache.__version__


def test_the_service_pins_the_library_it_was_built_with() -> None:
    hooks = service_hooks()
    built: dict[str, object] = {}
    hook = hooks.MetadataHook(
        str(SERVICE), pyproject(SERVICE)["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    )
    hook.update(built)
    assert built["version"] == hooks.version_of(ROOT / "src" / "myhibachi")
    dependencies = built["dependencies"]
    assert isinstance(dependencies, list)
    pin = f"freshcache[cli,prometheus,sqlalchemy,fastapi]=={freshcache.__version__}"
    assert dependencies[0] == pin
    names = {re.split(r"[\[<>=]", d)[0] for d in dependencies}
    # What the service imports that the library's extras do not bring.
    assert {"uvicorn", "jinja2", "pydantic-settings", "alembic", "aiosqlite", "asyncpg"} <= names
    readme = built["readme"]
    assert isinstance(readme, dict)
    assert readme["text"] == (ROOT / "src" / "myhibachi" / "README.md").read_text(encoding="utf-8")


def test_the_library_declares_no_service() -> None:
    project = pyproject(ROOT)["project"]
    assert isinstance(project, dict)
    assert project["scripts"] == {"freshcache": "freshcache.cli:main"}
    wheel = pyproject(ROOT)["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["src/freshcache"]
    entry_points = metadata.distribution("freshcache").entry_points
    assert [e.name for e in entry_points if e.group == "console_scripts"] == ["freshcache"]


def test_extras() -> None:
    extras = pyproject(ROOT)["project"]["optional-dependencies"]
    assert isinstance(extras, dict)
    assert {"cli", "prometheus", "sqlalchemy", "fastapi", "all", "dev", "bench"} <= set(extras)
    # `freshcache stats` parses /metrics with prometheus-client.
    assert any(d.startswith("prometheus-client") for d in extras["cli"])
    assert extras["all"] == ["freshcache[prometheus,cli,sqlalchemy,fastapi]"]
    for tool in ("import-linter", "build", "twine", "mkdocs-material", "mkdocstrings[python]"):
        assert any(d.startswith(tool) for d in extras["dev"]), tool


def test_both_wheels_carry_the_same_license() -> None:
    # hatchling's license-files must be inside the project folder, so the service's project
    # holds a copy of the repository's LICENSE; this keeps the two identical.
    assert (SERVICE / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_the_library_is_typed() -> None:
    assert (ROOT / "src" / "freshcache" / "py.typed").exists()
