"""Static values of expressions: constants, f-strings, imports, freshcache.pattern()/escape().

The audit reads code, never imports it, so a value is known only if it is built from literals
and module constants (also constants imported from another audited module). Everything else
becomes a *hole* that says why its text is unknown: filled by freshcache (template, escaped) or
not (raw: a glob injection) or not resolvable at all.
"""

from __future__ import annotations

import ast
import dataclasses
import string
from collections.abc import Iterator
from pathlib import Path

from freshcache.audit.model import Hole, HoleKind, Part, SymText
from freshcache.keys import WILDCARD, escape

#: Stands for "not a static constant" (None is a constant).
NOT_CONSTANT = object()
_MAX_DEPTH = 20  # constant chains longer than this are cycles or not worth following


@dataclasses.dataclass(slots=True)
class ModuleInfo:
    name: str  # dotted module name ("myhibachi.services.booking"; "app" for a loose file)
    path: Path
    display: str  # the path shown in reports
    tree: ast.Module
    #: module-level names bound exactly once by a plain assignment, to their value expression
    assignments: dict[str, ast.expr] = dataclasses.field(default_factory=dict)
    #: local name -> (module, attribute); attribute "" for "import x" / "import x as y"
    imports: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    #: "func" and "Class.method" -> definition, for following calls and callables
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = dataclasses.field(
        default_factory=dict
    )
    #: "Class" -> {attribute: value} for class-level constants
    class_constants: dict[str, dict[str, ast.expr]] = dataclasses.field(default_factory=dict)


def index_module(info: ModuleInfo) -> None:
    """Fill the symbol tables of ``info`` from its tree (top level and class bodies only)."""
    counts: dict[str, int] = {}
    for node in info.tree.body:
        for name, value in _bindings(node):
            counts[name] = counts.get(name, 0) + 1
            info.assignments[name] = value
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    info.imports[alias.asname] = (alias.name, "")
                else:  # "import a.b" binds "a"
                    top = alias.name.split(".")[0]
                    info.imports[top] = (top, "")
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_module(info, node)
            for alias in node.names:
                info.imports[alias.asname or alias.name] = (base, alias.name)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            info.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            consts: dict[str, ast.expr] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    info.functions[f"{node.name}.{item.name}"] = item
                for name, value in _bindings(item):
                    consts[name] = value
            info.class_constants[node.name] = consts
    # A name assigned twice is not a constant: its value depends on the path taken.
    for name, count in counts.items():
        if count > 1:
            del info.assignments[name]


def _bindings(node: ast.stmt) -> Iterator[tuple[str, ast.expr]]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if isinstance(target, ast.Name):
            yield target.id, node.value
    elif (
        isinstance(node, ast.AnnAssign)
        and node.value is not None
        and isinstance(node.target, ast.Name)
    ):
        yield node.target.id, node.value


def _absolute_module(info: ModuleInfo, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = info.name.split(".")
    # A module's package is its name minus the last part; an __init__'s is its own name.
    if info.path.name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*package, node.module] if node.module else package)


def source(node: ast.AST) -> str:
    return ast.unparse(node)


class Resolver:
    """Resolves expressions of one audited code base (all modules known by dotted name)."""

    def __init__(self, modules: dict[str, ModuleInfo]) -> None:
        self.modules = modules
        # Applications often import by a name relative to a source folder on sys.path
        # ("from core.cache import cached" for src/core/cache.py): a dotted suffix that names
        # exactly one audited module is that module.
        by_suffix: dict[str, set[str]] = {}
        for name in modules:
            parts = name.split(".")
            for i in range(1, len(parts)):
                by_suffix.setdefault(".".join(parts[i:]), set()).add(name)
        self._suffix = {k: next(iter(v)) for k, v in by_suffix.items() if len(v) == 1}

    def module_named(self, name: str) -> str:
        """The audited module an import names (itself, or its unique dotted suffix)."""
        if name in self.modules:
            return name
        return self._suffix.get(name, name)

    # -- names -----------------------------------------------------------------------------

    def qualified(self, mod: ModuleInfo, expr: ast.expr, depth: int = 0) -> str | None:
        """The dotted origin of a name or attribute chain (``fc.pattern`` -> freshcache.pattern),
        following re-exports through audited modules."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Name):
            if expr.id in mod.imports:
                module, attr = mod.imports[expr.id]
                return self._follow(module, attr, depth)
            if expr.id in mod.functions or expr.id in mod.assignments:
                return f"{mod.name}.{expr.id}"
            return None
        if isinstance(expr, ast.Attribute):
            base = self.qualified(mod, expr.value, depth + 1)
            return None if base is None else self._follow(base, expr.attr, depth)
        return None

    def _follow(self, module: str, attr: str, depth: int) -> str:
        module = self.module_named(module)
        target = self.modules.get(module)
        if attr and target is not None and attr in target.imports and depth < _MAX_DEPTH:
            inner_module, inner_attr = target.imports[attr]
            return self._follow(inner_module, inner_attr, depth + 1)
        return f"{module}.{attr}" if attr else module

    def is_freshcache(self, mod: ModuleInfo, expr: ast.expr, *names: str) -> bool:
        """Does ``expr`` name one of freshcache's public ``names`` (however imported)?"""
        qual = self.qualified(mod, expr)
        if qual is None:
            return False
        head, _, last = qual.rpartition(".")
        return last in names and (head == "freshcache" or head.startswith("freshcache."))

    # -- constants -------------------------------------------------------------------------

    def constant(self, mod: ModuleInfo, expr: ast.expr, depth: int = 0) -> object:
        """The value of a static expression, or NOT_CONSTANT."""
        if depth > _MAX_DEPTH:
            return NOT_CONSTANT
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, ast.Name):
            return self._name_constant(mod, expr.id, depth)
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            consts = mod.class_constants.get(expr.value.id)
            if consts is not None and expr.attr in consts:
                return self.constant(mod, consts[expr.attr], depth + 1)
            imported = mod.imports.get(expr.value.id)
            target_name = self.module_named(imported[0]) if imported is not None else ""
            if imported is not None and not imported[1] and target_name in self.modules:
                return self._name_constant(self.modules[target_name], expr.attr, depth + 1)
            if imported is not None and target_name in self.modules:
                # "from app.keys import Keys" then Keys.ALL: a class constant of that module
                target = self.modules[target_name]
                consts = target.class_constants.get(imported[1])
                if consts is not None and expr.attr in consts:
                    return self.constant(target, consts[expr.attr], depth + 1)
            return NOT_CONSTANT
        if isinstance(expr, ast.JoinedStr):
            out: list[str] = []
            for value in expr.values:
                v = (
                    self._formatted(mod, value, depth)
                    if isinstance(value, ast.FormattedValue)
                    else self.constant(mod, value, depth + 1)
                )
                if not isinstance(v, str):
                    return NOT_CONSTANT
                out.append(v)
            return "".join(out)
        if isinstance(expr, ast.BinOp):
            left = self.constant(mod, expr.left, depth + 1)
            right = self.constant(mod, expr.right, depth + 1)
            return _binop(expr.op, left, right)
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
            v = self.constant(mod, expr.operand, depth + 1)
            is_number = isinstance(v, int | float) and not isinstance(v, bool)
            return -v if is_number else NOT_CONSTANT  # type: ignore[operator]
        if isinstance(expr, ast.Tuple | ast.List):
            items = [self.constant(mod, e, depth + 1) for e in expr.elts]
            return NOT_CONSTANT if NOT_CONSTANT in items else tuple(items)
        if isinstance(expr, ast.Call):
            return self._timedelta_seconds(mod, expr, depth)
        return NOT_CONSTANT

    def _name_constant(self, mod: ModuleInfo, name: str, depth: int) -> object:
        if name in mod.assignments:
            return self.constant(mod, mod.assignments[name], depth + 1)
        if name in mod.imports:
            module, attr = mod.imports[name]
            target = self.modules.get(self.module_named(module))
            if attr and target is not None:
                return self._name_constant(target, attr, depth + 1)
        return NOT_CONSTANT

    def _formatted(self, mod: ModuleInfo, value: ast.FormattedValue, depth: int) -> object:
        if value.conversion != -1 or value.format_spec is not None:
            return NOT_CONSTANT
        v = self.constant(mod, value.value, depth + 1)
        return (
            str(v)
            if isinstance(v, str | int | float) and not isinstance(v, bool)
            else (NOT_CONSTANT)
        )

    def _timedelta_seconds(self, mod: ModuleInfo, call: ast.Call, depth: int) -> object:
        """``timedelta(minutes=5)`` (or ``.total_seconds()`` of it) as seconds."""
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "total_seconds"
            and isinstance(func.value, ast.Call)
            and not call.args
        ):
            return self._timedelta_seconds(mod, func.value, depth)
        qual = self.qualified(mod, func) or ""
        if qual not in ("datetime.timedelta", "timedelta"):
            return NOT_CONSTANT
        units = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "milliseconds": 1e-3}
        total = 0.0
        for kw in call.keywords:
            v = self.constant(mod, kw.value, depth + 1)
            if kw.arg not in units or not isinstance(v, int | float) or isinstance(v, bool):
                return NOT_CONSTANT
            total += v * units[kw.arg]
        for position, arg in enumerate(call.args[:2]):
            v = self.constant(mod, arg, depth + 1)
            if not isinstance(v, int | float) or isinstance(v, bool):
                return NOT_CONSTANT
            total += v * (86400, 1)[position]
        return total

    # -- symbolic text (keys and patterns) -------------------------------------------------

    def symtext(
        self,
        mod: ModuleInfo,
        expr: ast.expr,
        scope: dict[str, ast.expr] | None = None,
        depth: int = 0,
    ) -> SymText | None:
        """The text of a prefix or pattern expression, holes where it is only known at run time.

        None when the expression as a whole cannot be resolved (a parameter, a call result).
        ``scope`` maps local names assigned once in the enclosing function to their values.
        """
        if depth > _MAX_DEPTH:
            return None
        value = self.constant(mod, expr)
        if isinstance(value, str):
            return SymText.literal(value)
        if value is not NOT_CONSTANT:
            return None  # a number or a tuple is not a pattern
        if isinstance(expr, ast.Name) and scope and expr.id in scope:
            return self.symtext(mod, scope[expr.id], scope, depth + 1)
        if isinstance(expr, ast.JoinedStr):
            text = SymText(())
            for part in expr.values:
                if isinstance(part, ast.FormattedValue):
                    text = text + self._interpolated(mod, part.value, scope, depth)
                else:
                    v = self.constant(mod, part)
                    text = text + SymText.literal(str(v))
            return text
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            left = self._operand(mod, expr.left, scope, depth)
            right = self._operand(mod, expr.right, scope, depth)
            return left + right
        if isinstance(expr, ast.Call):
            return self._call_text(mod, expr, scope, depth)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod):
            fmt = self.constant(mod, expr.left)
            if isinstance(fmt, str):  # "booking:%s:*" % day: every %-field is raw
                pieces = fmt.split("%s")
                parts: list[Part] = []
                for i, piece in enumerate(pieces):
                    if i:
                        parts.append(Hole(HoleKind.RAW, source(expr.right)))
                    if piece:
                        parts.append(piece)
                return SymText(tuple(parts))
        return None

    def _operand(
        self, mod: ModuleInfo, expr: ast.expr, scope: dict[str, ast.expr] | None, depth: int
    ) -> SymText:
        text = self.symtext(mod, expr, scope, depth + 1)
        return text if text is not None else SymText((Hole(HoleKind.RAW, source(expr)),))

    def _interpolated(
        self, mod: ModuleInfo, expr: ast.expr, scope: dict[str, ast.expr] | None, depth: int
    ) -> SymText:
        value = self.constant(mod, expr)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return SymText.literal(str(value))
        if isinstance(expr, ast.Call) and self.is_freshcache(mod, expr.func, "escape"):
            return SymText((Hole(HoleKind.ESCAPED, source(expr)),))
        if isinstance(expr, ast.Name) and scope and expr.id in scope:
            inner = scope[expr.id]
            if isinstance(inner, ast.Call) and self.is_freshcache(mod, inner.func, "escape"):
                return SymText((Hole(HoleKind.ESCAPED, source(expr)),))
        return SymText((Hole(HoleKind.RAW, source(expr)),))

    def _call_text(
        self, mod: ModuleInfo, call: ast.Call, scope: dict[str, ast.expr] | None, depth: int
    ) -> SymText | None:
        if self.is_freshcache(mod, call.func, "pattern"):
            if not call.args or any(isinstance(a, ast.Starred) for a in call.args):
                return None
            parts: list[Part] = []
            for i, arg in enumerate(call.args):
                if i:
                    parts.append(":")
                value = self.constant(mod, arg)
                last = i == len(call.args) - 1
                if last and value == WILDCARD:
                    parts.append(WILDCARD)
                elif value is not NOT_CONSTANT and _formattable(value):
                    parts.append(escape(value))
                else:
                    parts.append(Hole(HoleKind.ESCAPED, source(arg)))
            return SymText(()) + SymText(tuple(parts))
        if self.is_freshcache(mod, call.func, "escape") and len(call.args) == 1:
            return SymText((Hole(HoleKind.ESCAPED, source(call)),))
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "format":
            fmt = self.constant(mod, func.value)
            if isinstance(fmt, str):  # "booking:{}:*".format(day): every field is raw
                out = SymText(())
                try:
                    parsed = list(string.Formatter().parse(fmt))
                except ValueError:
                    return None
                for literal, field, _spec, _conv in parsed:
                    out = out + SymText.literal(literal)
                    if field is not None:
                        out = out + SymText((Hole(HoleKind.RAW, source(call)),))
                return out
        if isinstance(func, ast.Attribute) and func.attr == "join":
            sep = self.constant(mod, func.value)
            if isinstance(sep, str) and len(call.args) == 1:
                seq = call.args[0]
                if isinstance(seq, ast.List | ast.Tuple):
                    out = SymText(())
                    for i, elt in enumerate(seq.elts):
                        if i:
                            out = out + SymText.literal(sep)
                        out = out + self._operand(mod, elt, scope, depth)
                    return out
        return None


def _formattable(value: object) -> bool:
    try:
        escape(value)
    except TypeError:
        return False
    return True


def _binop(op: ast.operator, left: object, right: object) -> object:
    if left is NOT_CONSTANT or right is NOT_CONSTANT:
        return NOT_CONSTANT
    if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        return left + right
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numbers:
        return NOT_CONSTANT
    a, b = float(left), float(right)  # type: ignore[arg-type]
    if isinstance(op, ast.Add):
        result = a + b
    elif isinstance(op, ast.Sub):
        result = a - b
    elif isinstance(op, ast.Mult):
        result = a * b
    elif isinstance(op, ast.Div) and b:
        result = a / b
    elif isinstance(op, ast.FloorDiv) and b:
        result = float(a // b)
    else:
        return NOT_CONSTANT
    return int(result) if result.is_integer() and isinstance(left, int) else result


def local_scope(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> dict[str, ast.expr]:
    """Local names assigned exactly once in ``func`` (not in nested functions)."""
    if isinstance(func, ast.Lambda):
        return {}
    cached = _SCOPES.get(id(func))
    if cached is not None and cached[0] is func:
        return cached[1]
    scope = _local_scope(func)
    _SCOPES[id(func)] = (func, scope)
    return scope


def _local_scope(func: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    for node in walk_local(func):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    # Only names the statement binds: `row.state = x` and `rows[0] = x`
                    # load `row`/`rows` (ctx Load) and leave them bound as they were.
                    if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                        counts[name.id] = counts.get(name.id, 0) + 1
                        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value:
                            values[name.id] = node.value
        elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
            targets_: list[ast.expr] = (
                [node.target]
                if isinstance(node, ast.For | ast.AsyncFor)
                else [i.optional_vars for i in node.items if i.optional_vars is not None]
            )
            for target in targets_:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                        counts[name.id] = counts.get(name.id, 0) + 2  # loop/with: not constant
    return {name: values[name] for name, count in counts.items() if count == 1 and name in values}


#: walk_local() and local_scope() results by node, for one audit: the scanner, the footprint
#: pass and every adapter walk the same functions, so each is walked once (the node is kept
#: with its result so a reused id() can never return another node's walk).
_WALKS: dict[int, tuple[ast.AST, list[ast.AST]]] = {}
_SCOPES: dict[int, tuple[ast.AST, dict[str, ast.expr]]] = {}


def forget_walks() -> None:
    """Drop the memoised walks (at the start and end of an audit)."""
    _WALKS.clear()
    _SCOPES.clear()


def walk_local(func: ast.AST) -> Iterator[ast.AST]:
    """Like ast.walk over a function body, but not into nested functions, classes or lambdas."""
    cached = _WALKS.get(id(func))
    if cached is not None and cached[0] is func:
        return iter(cached[1])
    nested = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
    stack: list[ast.AST] = [n for n in getattr(func, "body", []) if not isinstance(n, nested)]
    out: list[ast.AST] = []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, nested))
    _WALKS[id(func)] = (func, out)
    return iter(out)
