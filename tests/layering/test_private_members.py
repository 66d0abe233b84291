"""No module reaches into another's private members (checked on the AST, in the test command).

Two rules, for every module under src/freshcache and src/myhibachi:

- ``obj._name`` is allowed only when ``obj`` is ``self`` or ``cls``, or when ``_name`` is
  defined in the same module (a class of the module handling another instance of itself, as
  ``__eq__`` does). Dunders (``__wrapped__``) are not private.
- ``from x import _name`` is allowed only within one module (it never is across modules).
  Private *modules* (``freshcache._engine``) are the convention for implementation: importing
  public names from them is what the underscore on the module is for.

The import rules between modules (layers, what may import what, lazy imports included) are
import-linter's: see ``.importlinter`` (``lint-imports`` runs in ``python3 dev.py test``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ("freshcache", "myhibachi")
#: (module path relative to src/, attribute): reaches that are the point, with the reason.
ALLOWED: dict[tuple[str, str], str] = {
    # namedtuple's public API is underscored (``_replace``, ``_asdict``) to avoid field clashes.
    ("*", "_replace"): "namedtuple API",
    ("*", "_asdict"): "namedtuple API",
    ("*", "_fields"): "namedtuple API",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_names(tree: ast.Module) -> set[str]:
    """Every private name the module itself defines: functions, classes, assignments
    (including ``self._x = ...``), parameters, and ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
                names.add(arg.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__slots__":
                    for element in ast.walk(node.value):
                        if isinstance(element, ast.Constant) and isinstance(element.value, str):
                            names.add(element.value)
    return {n for n in names if _private(n)}


def violations(path: Path, relative: str | None = None) -> list[str]:
    relative = relative or path.relative_to(SRC).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
    own = _defined_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr in own:
                continue
            if (relative, node.attr) in ALLOWED or ("*", node.attr) in ALLOWED:
                continue
            found.append(f"{relative}:{node.lineno}: reaches into .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(
                        f"{relative}:{node.lineno}: imports private {alias.name} from {node.module}"
                    )
    return found


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_no_module_reaches_into_another_modules_private_members(path: Path) -> None:
    assert violations(path) == []


def test_the_check_finds_what_it_is_for(tmp_path: Path) -> None:
    """The check can fail: a planted reach and a planted private import are both reported."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from freshcache.cache import _hidden\n\n\ndef f(cache):\n    return cache._backends\n"
    )
    found = violations(planted, "freshcache/_planted_for_test.py")
    assert found == [
        "freshcache/_planted_for_test.py:1: imports private _hidden from freshcache.cache",
        "freshcache/_planted_for_test.py:5: reaches into ._backends",
    ]


def test_own_private_members_and_self_are_allowed() -> None:
    source = (
        "class A:\n"
        "    __slots__ = ('_x',)\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "    def same(self, other):\n"
        "        return other._x == self._x\n"
    )
    tree = ast.parse(source)
    assert _defined_names(tree) == {"_x"}
